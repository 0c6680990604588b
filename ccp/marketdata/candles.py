"""Candles: a contract's trades summed per time bucket. Pure (no ORM), so the rule is in one place.

A bucket of interval 1m, 5m, 1h or 1d starts at a whole multiple of its length since the Unix epoch,
in UTC: 1h buckets on the hour, 1d buckets at 00:00 UTC. Inside a bucket trades are ordered by their
contract's sequence, not by time: ``open`` is the price of the lowest sequence, ``close`` of the
highest. Two bars of one bucket merge into the bar of their trades together (``bar_merge``), so a
bucket can be built in parts, in any order; the database upsert (``ccp.marketdata.services``)
applies the same rule to the stored bar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(at: datetime, interval: str) -> datetime:
    """The start of the ``interval`` bucket holding the instant ``at`` (aware), in UTC."""
    length = INTERVALS[interval]
    return EPOCH + (at - EPOCH) // length * length


@dataclass(slots=True)
class Bar:
    """One bucket's trades: prices by sequence (open, close) and extremes, volume in contracts."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    first_sequence: int
    last_sequence: int


def bar_merge(bar: Bar, other: Bar) -> None:
    """Add ``other``'s trades (none of them already in ``bar``) to ``bar``."""
    if other.first_sequence < bar.first_sequence:
        bar.open, bar.first_sequence = other.open, other.first_sequence
    if other.last_sequence > bar.last_sequence:
        bar.close, bar.last_sequence = other.close, other.last_sequence
    bar.high = max(bar.high, other.high)
    bar.low = min(bar.low, other.low)
    bar.volume += other.volume
    bar.trade_count += other.trade_count


def bars_of(trades: Iterable[Mapping]) -> dict[tuple[int, str, datetime], Bar]:
    """The bars of ``trades`` (mappings with ``contract_id``, ``sequence``, ``price``, ``quantity``,
    ``executed_at``), by (contract id, interval, bucket start), for every interval. Trades are summed
    per minute first, then the minutes per longer bucket: an auction's 30,000 trades at one price and
    one time make one bar per interval."""
    minutes: dict[tuple[int, datetime], Bar] = {}
    starts: dict[datetime, datetime] = {}  # executed_at -> its minute: a booking shares one time
    for trade in trades:
        at = trade["executed_at"]
        start = starts.get(at)
        if start is None:
            start = starts[at] = bucket_start(at, "1m")
        price, quantity, sequence = trade["price"], trade["quantity"], trade["sequence"]
        bar = minutes.get((trade["contract_id"], start))
        if bar is None:
            minutes[(trade["contract_id"], start)] = Bar(price, price, price, price, quantity, 1, sequence, sequence)
            continue
        if sequence < bar.first_sequence:
            bar.open, bar.first_sequence = price, sequence
        if sequence > bar.last_sequence:
            bar.close, bar.last_sequence = price, sequence
        if price > bar.high:
            bar.high = price
        elif price < bar.low:
            bar.low = price
        bar.volume += quantity
        bar.trade_count += 1
    bars: dict[tuple[int, str, datetime], Bar] = {}
    for interval in INTERVALS:
        for (contract_id, minute), bar in sorted(minutes.items()):
            key = (contract_id, interval, bucket_start(minute, interval))
            if key in bars:
                bar_merge(bars[key], bar)
            else:
                bars[key] = Bar(bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count,
                                bar.first_sequence, bar.last_sequence)
    return bars
