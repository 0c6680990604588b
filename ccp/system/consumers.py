from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ccp.system.streams import SYSTEM_GROUP


class SystemConsumer(AsyncJsonWebsocketConsumer):
    """Public, read-only stream of system events (heartbeats): proves worker -> Redis -> daphne."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(SYSTEM_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(SYSTEM_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        await self.send_json({"code": "read_only", "message": "This stream takes no messages.", "extra": {}})

    async def system_event(self, message: dict) -> None:
        await self.send_json(message["event"])
