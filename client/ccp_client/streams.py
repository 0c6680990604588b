"""WebSocket streams that keep themselves whole: each one reconnects with backoff when its connection
drops and re-syncs over REST whatever it may have missed (the server's channel layer delivers at most
once). Iterate one to get its events (dicts, money as ``Decimal``); the stream adds ``resync`` events
of its own that say what it re-read and why.

- ``BookStream(client, symbol)``: ``book.snapshot``, ``book.level`` and ``trade`` messages, and
  ``.book``, a ``LocalBook`` kept from them; on a sequence gap it re-reads ``GET .../book``.
- ``PrivateStream(client)``: your ``order``, ``balance``, ``auction`` and ``expiry`` events; after a
  reconnect a ``resync`` event with your open orders and the fills made since the connection dropped.
- ``TradeStream(client, symbol)``: public trades with sequences; on a gap it re-reads the missing
  ones (``GET .../trades?after_sequence=N``) and yields them in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from ccp_client.books import GapError, LocalBook, Seen, Sequence
from ccp_client.client import Client
from ccp_client.errors import ApiError
from ccp_client.money import decimals

CLOSE_UNAUTHORIZED, CLOSE_NOT_FOUND = 4401, 4404


class Backoff:
    """Waits between reconnects: 0.5 s doubling to ``cap_s``; back to the start after a good connection."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s, self.next_s = first_s, cap_s, first_s

    def wait(self) -> None:
        time.sleep(self.next_s)
        self.next_s = min(self.next_s * 2, self.cap_s)

    def reset(self) -> None:
        self.next_s = self.first_s


class Stream:
    """A stream path on the client's server; reconnects until ``close()`` or ``max_reconnects``."""

    path = ""

    def __init__(self, client: Client, *, recv_timeout_s: float | None = None,
                 max_reconnects: int | None = None) -> None:
        self.client = client.fork() if isinstance(client, Client) else client  # streams run in threads of their own
        self.recv_timeout_s = recv_timeout_s  # None: wait for messages forever
        self.max_reconnects = max_reconnects
        self.connections = 0  # how many times it connected (1 + reconnects)
        self.ws: ClientConnection | None = None
        self.backoff = Backoff()
        self._closed = False

    def headers(self) -> dict[str, str]:
        return {}

    def connect(self) -> None:
        self.ws = connect(self.client.ws_url + self.path, additional_headers=self.headers(), open_timeout=15,
                          max_size=2**22, legacy=True)  # a connection kept across calls, not a with block
        self.connections += 1

    def drop(self) -> None:
        """Close the connection (the next read reconnects): a test's way to lose messages."""
        if self.ws is not None:
            self.ws.close()

    def close(self) -> None:
        self._closed = True
        self.drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def messages(self) -> Iterator[dict]:
        """Raw messages across reconnects; ``on_connect`` runs after each connection opens. Ends after
        ``recv_timeout_s`` without a message, or on ``close()``."""
        reconnects = 0
        while not self._closed:
            try:
                if self.ws is None:
                    self.connect()
                    yield from self.on_connect()
                try:
                    message = self.ws.recv(timeout=self.recv_timeout_s)
                except TimeoutError:
                    return  # quiet for recv_timeout_s (a connect that times out is a lost connection, below)
                self.backoff.reset()
                yield decimals(json.loads(message))
            except (ConnectionClosed, InvalidHandshake, OSError) as lost:
                code = getattr(getattr(lost, "rcvd", None), "code", None)
                self.ws = None
                if self._closed:
                    return
                self.on_lost()
                if code == CLOSE_NOT_FOUND:
                    raise ApiError(code, "not_found", f"no such stream: {self.path}") from lost
                if code == CLOSE_UNAUTHORIZED:
                    self.client.sign_in()  # the token expired or was revoked: a new one, then reconnect
                reconnects += 1
                if self.max_reconnects is not None and reconnects > self.max_reconnects:
                    raise
                self.backoff.wait()

    def on_connect(self) -> Iterator[dict]:
        """Events to yield after each connection opens (a re-sync's)."""
        return iter(())

    def on_lost(self) -> None:
        """The connection dropped (it is reconnected next)."""


class BookStream(Stream):
    """A contract's book stream with a local book that re-syncs on a sequence gap."""

    def __init__(self, client: Client, symbol: str, **options) -> None:
        super().__init__(client, **options)
        self.symbol = symbol
        self.path = f"/ws/v1/book/{symbol}"
        self.book = LocalBook(symbol=symbol)
        self.resyncs = 0

    def on_connect(self) -> Iterator[dict]:
        self.book.synced = False  # the server sends a fresh snapshot first
        return iter(())

    def __iter__(self) -> Iterator[dict]:
        for message in self.messages():
            kind = message.get("type")
            if kind == "book.snapshot":
                self.book.load(message)
            elif kind == "book.level":
                try:
                    if not self.book.apply(message):
                        continue  # already in the snapshot
                except GapError as gap:
                    yield self.resync(f"gap: expected {gap.expected}, got {gap.got}")
                    continue  # the REST book is at least as new as this message: it is in it
            yield message

    def resync(self, reason: str) -> dict:
        """Reload the book from ``GET /api/v1/contracts/<symbol>/book``. Its sequence is at least that of
        any change received: a change is published after the commit that numbered it."""
        self.resyncs += 1
        self.book.load(self.client.book(self.symbol))
        return {"type": "resync", "reason": reason, "sequence": self.book.sequence.last}


class PrivateStream(Stream):
    """Your own events; after a reconnect, one ``resync`` event with what REST says changed meanwhile:
    ``orders`` (your open orders now) and ``fills`` (fills executed since the connection dropped)."""

    path = "/ws/v1/private"
    overlap = timedelta(seconds=5)  # fills are re-read from a little before the drop; ``seen`` removes repeats

    def __init__(self, client: Client, **options) -> None:
        super().__init__(client, **options)
        self.seen_fills: set[tuple[int, int]] = set()  # (trade_id, order_id)
        self.dropped_at: datetime | None = None

    def headers(self) -> dict[str, str]:
        if not self.client.token:
            self.client.sign_in()
        return {"Authorization": f"Bearer {self.client.token}"}

    def on_lost(self) -> None:
        self.dropped_at = self.dropped_at or datetime.now(UTC)

    def on_connect(self) -> Iterator[dict]:
        if self.connections == 1:
            return iter(())
        since = (self.dropped_at or datetime.now(UTC)) - self.overlap
        self.dropped_at = None
        fills = [fill for fill in self.client.fills(since=since) if self._new(fill)]
        return iter([{"type": "resync", "reason": "reconnect", "orders": self.client.open_orders(), "fills": fills}])

    def _new(self, fill: dict) -> bool:
        key = (fill["trade_id"], fill["order_id"])
        if key in self.seen_fills:
            return False
        self.seen_fills.add(key)
        return True

    def __iter__(self) -> Iterator[dict]:
        for message in self.messages():
            if message.get("type") == "auction":
                for event in message.get("events", []):
                    if event.get("type") == "fill":
                        for trade in event.get("trades", []):
                            trade_id = trade.get("id") if isinstance(trade, dict) else trade
                            self.seen_fills.add((trade_id, event["order_id"]))
            yield message


class TradeStream(Stream):
    """A contract's public trades (``ws/v1/trades/<symbol>``), each with the next ``sequence``; on a gap
    the missing trades are read over REST and yielded in order, each marked ``"resynced": True``."""

    def __init__(self, client: Client, symbol: str, **options) -> None:
        super().__init__(client, **options)
        self.symbol = symbol
        self.path = f"/ws/v1/trades/{symbol}"
        self.sequence = Sequence()
        self.resyncs = 0

    def __iter__(self) -> Iterator[dict]:
        for message in self.messages():
            for trade in message.get("trades") or [message]:
                yield from self.accept(trade)

    def accept(self, trade: dict) -> Iterator[dict]:
        """The trades to hand on for one received: none if old, the missing ones first after a gap."""
        number = trade.get("sequence")
        if number is None:
            yield trade  # not a trade (e.g. a hello)
            return
        seen = self.sequence.see(number)
        if seen is Seen.OLD:
            return
        if seen is Seen.GAP:
            self.resyncs += 1
            for missed in self.client.trades_after(self.symbol, self.sequence.last):
                if missed["sequence"] < number and self.sequence.see(missed["sequence"]) is Seen.NEXT:
                    self.sequence.advance(missed["sequence"])
                    yield {**missed, "type": trade.get("type", "trade"), "resynced": True}
        self.sequence.advance(number)
        yield trade
