"""Read-only WebSocket streams. Each consumer joins its groups and forwards their events."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ccp.errors import error_body


class StreamConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def join(self, *groups: str) -> None:
        self.groups_joined = list(groups)
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        await self.send_json(error_body("read_only", "This stream takes no messages."))

    async def may_send(self) -> bool:
        """Checked before forwarding a message (or a bundle); a subclass may close the stream instead."""
        return True

    def forwards(self, event: dict) -> bool:
        """Whether this subscriber gets ``event``."""
        return True

    async def stream_event(self, message: dict) -> None:
        if await self.may_send() and self.forwards(message["event"]):
            await self.send_json(message["event"])

    async def stream_events(self, message: dict) -> None:
        """A bundle of events (``ccp.streams``), forwarded one by one, in order."""
        if await self.may_send():
            for event in message["events"]:
                if self.forwards(event):
                    await self.send_json(event)
