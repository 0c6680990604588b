"""Read-only WebSocket streams. Each consumer joins its groups and forwards their events.

A stream that refuses a client still completes the WebSocket handshake and then closes with a
code the client can read (4401 not authenticated, 4404 no such stream); a refused handshake would
be an HTTP 403 that says nothing. Messages from the client are never parsed.
"""

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from ccp.contracts.models import Contract
from ccp.errors import error_body

CLOSE_NOT_FOUND = 4404
CLOSE_UNAUTHORIZED = 4401


class StreamConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def dispatch(self, message: dict) -> None:
        """Channels' dispatch without its ``aclose_old_connections()`` before every handler: that is a
        hop to the process's one synchronous thread (the thread every request's view runs on) for
        each message of each subscriber, so 1,000 subscribers of a book queued 1,000 hops per change
        behind each other and behind any slow view. The streams reach the database only through
        ``database_sync_to_async``, which closes old connections itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def refuse(self, code: int) -> None:
        """Complete the handshake, then close with ``code``."""
        await self.accept()
        await self.close(code=code)

    async def join(self, *groups: str) -> None:
        self.groups_joined = list(groups)
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # Not parsed: the streams take no messages (a frame over the server's limit is closed with 1009).
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


class ContractStreamConsumer(StreamConsumer):
    """A public stream of the contract ``<symbol>`` names: a snapshot carrying a ``sequence``, then the
    events of the contract's group newer than it (a client that sees a sequence jump re-syncs over
    REST). An unknown symbol is closed with 4404."""

    snapshot_sequence = 0

    def group(self, contract_id: int) -> str:
        raise NotImplementedError

    def snapshot(self, contract_id: int, symbol: str) -> dict:
        """The first message, with its ``sequence`` (reads the database: runs in a worker thread)."""
        raise NotImplementedError

    async def connect(self) -> None:
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        contract_id = await database_sync_to_async(self._contract_id)(symbol)
        if contract_id is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        # Join before reading, so no event after the snapshot is missed; older ones are dropped below.
        await self.join(self.group(contract_id))
        snapshot = await database_sync_to_async(self.snapshot)(contract_id, symbol)
        self.snapshot_sequence = snapshot["sequence"]
        await self.accept()
        await self.send_json(snapshot)

    @staticmethod
    def _contract_id(symbol: str) -> int | None:
        return Contract.objects.filter(symbol=symbol).values_list("id", flat=True).first()

    def forwards(self, event: dict) -> bool:
        # Events the snapshot holds are dropped; events without a sequence always pass.
        sequence = event.get("sequence")
        return sequence is None or sequence > self.snapshot_sequence


class UnknownStreamConsumer(AsyncWebsocketConsumer):
    """Any WebSocket path that is not a stream: closed with 4404 after the handshake."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
