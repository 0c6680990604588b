"""Pure stream state, fed one message at a time: no sockets, no HTTP, so the gap handling is tested by
feeding it messages.

A stream's messages carry consecutive sequence numbers; the channel layer delivers at most once, so a
number may be missing. ``Sequence`` says, for each number seen, whether it is the next one, an old one
(already in the state, e.g. in the snapshot) or beyond a gap; ``LocalBook`` keeps a book from a
snapshot and level changes and refuses to apply a change after a gap (the caller re-syncs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum


class Seen(Enum):
    NEXT = "next"  # the one after the last: apply it
    OLD = "old"  # at or before the last: already applied (or in the snapshot): drop it
    GAP = "gap"  # beyond the next: something was lost: re-sync


@dataclass
class Sequence:
    """The last sequence number applied; ``None`` until a snapshot (or a first message) sets it."""

    last: int | None = None

    def see(self, number: int) -> Seen:
        if self.last is None or number == self.last + 1:
            return Seen.NEXT
        return Seen.OLD if number <= self.last else Seen.GAP

    def advance(self, number: int) -> None:
        self.last = number


class GapError(Exception):
    """A message beyond the next sequence number: the local state missed something."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"sequence gap: expected {expected}, got {got}")
        self.expected, self.got = expected, got


@dataclass
class LocalBook:
    """A contract's book by price level (price -> (quantity, orders)), from ``book.snapshot`` and
    ``book.level`` messages (or the REST book, which has the same shape and the stream's sequence)."""

    symbol: str = ""
    bids: dict[Decimal, tuple[Decimal, int]] = field(default_factory=dict)
    asks: dict[Decimal, tuple[Decimal, int]] = field(default_factory=dict)
    sequence: Sequence = field(default_factory=Sequence)
    synced: bool = False

    def load(self, snapshot: dict) -> None:
        """Replace the book with a snapshot (``bids``/``asks`` lists of levels, ``sequence``)."""
        self.symbol = snapshot.get("contract", self.symbol)
        self.bids, self.asks = (
            {Decimal(level["price"]): (Decimal(level["quantity"]), level["orders"]) for level in snapshot[side]}
            for side in ("bids", "asks"))
        self.sequence = Sequence(snapshot["sequence"])
        self.synced = True

    def apply(self, message: dict) -> bool:
        """Apply a ``book.level`` change; True if it changed the book, False if it was old. Raises
        ``GapError`` (and marks the book out of sync) when it comes after a missing one."""
        number = message["sequence"]
        if not self.synced:
            raise GapError(-1, number)
        seen = self.sequence.see(number)
        if seen is Seen.OLD:
            return False
        if seen is Seen.GAP:
            self.synced = False
            raise GapError(self.sequence.last + 1, number)
        levels = self.bids if message["side"] == "buy" else self.asks
        price, quantity = Decimal(message["price"]), Decimal(message["quantity"])
        if quantity:
            levels[price] = (quantity, message.get("orders", 0))
        else:
            levels.pop(price, None)
        self.sequence.advance(number)
        return True

    def best_bid(self) -> Decimal | None:
        return max(self.bids, default=None)

    def best_ask(self) -> Decimal | None:
        return min(self.asks, default=None)

    def levels(self) -> dict:
        """The book in the REST/snapshot shape (best first), to compare with ``GET .../book``."""
        def shown(levels: dict, best_high: bool) -> list[dict]:
            return [{"price": p, "quantity": q, "orders": n} for p, (q, n) in sorted(levels.items(), reverse=best_high)]

        return {"sequence": self.sequence.last, "bids": shown(self.bids, True), "asks": shown(self.asks, False)}
