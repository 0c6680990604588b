from ccp.consumers import StreamConsumer
from ccp.streams import SYSTEM_GROUP


class SystemConsumer(StreamConsumer):
    """Public stream of system events (heartbeats): proves worker -> Redis -> daphne."""

    async def connect(self) -> None:
        await self.join(SYSTEM_GROUP)
        await self.accept()
