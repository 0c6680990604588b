"""Read-only WebSocket streams. Each consumer joins its groups and forwards their events.

A stream that refuses a client still completes the WebSocket handshake and then closes with a
code the client can read (4401 not authenticated, 4404 no such stream); a refused handshake would
be an HTTP 403 that says nothing. Messages from the client are never parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref

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


class _Fanout:
    """One channel-layer subscription of a process (an event loop) to a public group, shared by every
    local subscriber of it: each event is received and encoded to JSON once, then queued, as text, to
    each subscriber's own writer. Per subscriber and event, Channels' consumer loop (a new task and an
    ``asyncio.wait`` each), the message's deserialisation and ``json.dumps`` were most of a book
    change's cost at 1,000 subscribers (``bench/ws_fanout.py``)."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {group: _Fanout}

    def __init__(self, layer, group: str) -> None:
        self.layer, self.group = layer, group
        self.members: set[ContractStreamConsumer] = set()
        self.channel = ""
        self.reader: asyncio.Task | None = None
        self.started = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            events = ([message["event"]] if kind == "stream.event"
                      else message["events"] if kind == "stream.events" else [])
            for event in events:
                item = (event.get("sequence"), json.dumps(event))
                for member in self.members:
                    member.outbox.put_nowait(item)

    @classmethod
    async def join(cls, consumer: ContractStreamConsumer, group: str) -> None:
        """Add ``consumer`` to the group's fan-out; returns once the group is subscribed (its events
        from then on are queued to the consumer)."""
        fanouts = cls._by_loop.setdefault(asyncio.get_running_loop(), {})
        fanout = fanouts.get(group)
        if fanout is None:
            fanout = fanouts[group] = cls(consumer.channel_layer, group)
        fanout.members.add(consumer)
        try:
            await asyncio.shield(fanout.started)
        except Exception:
            fanout.members.discard(consumer)
            if fanouts.get(group) is fanout:
                del fanouts[group]  # the next subscriber tries again
            raise

    @classmethod
    async def leave(cls, consumer: ContractStreamConsumer, group: str) -> None:
        """Remove ``consumer``; the last one out unsubscribes the process from the group."""
        fanouts = cls._by_loop.get(asyncio.get_running_loop(), {})
        fanout = fanouts.get(group)
        if fanout is None or consumer not in fanout.members:
            return
        fanout.members.discard(consumer)
        if fanout.members:
            return
        del fanouts[group]
        with contextlib.suppress(Exception):
            await fanout.started
        if fanout.reader is not None:
            fanout.reader.cancel()
            await fanout.layer.group_discard(group, fanout.channel)


class ContractStreamConsumer(StreamConsumer):
    """A public stream of the contract ``<symbol>`` names: a snapshot carrying a ``sequence``, then the
    events of the contract's group newer than it (a client that sees a sequence jump re-syncs over
    REST). An unknown symbol is closed with 4404. The group's events reach it through the process's
    one subscription to the group (``_Fanout``), already encoded, and its writer task sends them."""

    snapshot_sequence = 0
    fanout_group = ""
    writer: asyncio.Task | None = None

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
        # Join before reading, so no event after the snapshot is missed; older ones are dropped by the
        # writer, which starts once the snapshot is sent.
        self.outbox: asyncio.Queue[tuple[int | None, str]] = asyncio.Queue()
        self.fanout_group = self.group(contract_id)
        await _Fanout.join(self, self.fanout_group)
        snapshot = await database_sync_to_async(self.snapshot)(contract_id, symbol)
        self.snapshot_sequence = snapshot["sequence"]
        await self.accept()
        await self.send_json(snapshot)
        self.writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while True:
            sequence, text = await self.outbox.get()
            # Events the snapshot holds are dropped; events without a sequence always pass.
            if sequence is None or sequence > self.snapshot_sequence:
                try:
                    await self.send(text_data=text)
                except Exception:  # the client went away: disconnect() follows and stops this writer
                    return

    async def disconnect(self, code: int) -> None:
        if self.writer is not None:
            self.writer.cancel()
        if self.fanout_group:
            await _Fanout.leave(self, self.fanout_group)
        await super().disconnect(code)

    @staticmethod
    def _contract_id(symbol: str) -> int | None:
        return Contract.objects.filter(symbol=symbol).values_list("id", flat=True).first()


class UnknownStreamConsumer(AsyncWebsocketConsumer):
    """Any WebSocket path that is not a stream: closed with 4404 after the handshake."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
