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

    async def stream_event(self, message: dict) -> None:
        await self.send_json(message["event"])

    async def stream_events(self, message: dict) -> None:
        """A bundle of events (``ccp.streams``): each goes through ``stream_event``, in order."""
        for event in message["events"]:
            await self.stream_event({"type": "stream.event", "event": event})
