"""Market data written as trades are booked and books change: candles, the public trade stream, and
the best bid and offer on the book stream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection

from ccp.clock import iso_utc, require_aware
from ccp.contracts.models import Contract
from ccp.db import Write, upsert_write, writes_send
from ccp.marketdata.candles import bars_of
from ccp.marketdata.models import Candle
from ccp.money import money_str
from ccp.orders.models import Side
from ccp.orders.selectors import books_bbo
from ccp.streams import book_group, stream_publish, stream_publish_many, trades_group

# A stored bar plus a new bar of the same bucket (``ccp.marketdata.candles.bar_merge``, in SQL).
_CANDLE_MERGE = {
    "open": 'CASE WHEN EXCLUDED."first_sequence" < t."first_sequence" THEN EXCLUDED."open" ELSE t."open" END',
    "close": 'CASE WHEN EXCLUDED."last_sequence" > t."last_sequence" THEN EXCLUDED."close" ELSE t."close" END',
    "high": 'GREATEST(t."high", EXCLUDED."high")',
    "low": 'LEAST(t."low", EXCLUDED."low")',
    "volume": 't."volume" + EXCLUDED."volume"',
    "trade_count": 't."trade_count" + EXCLUDED."trade_count"',
    "first_sequence": 'LEAST(t."first_sequence", EXCLUDED."first_sequence")',
    "last_sequence": 'GREATEST(t."last_sequence", EXCLUDED."last_sequence")',
    "updated_at": 'EXCLUDED."updated_at"',
}


def candles_record(*, trades: Sequence[Mapping], now: datetime) -> None:
    """Add freshly booked ``trades`` (``trades_book``'s rows) to their contracts' 1m, 5m, 1h and 1d
    candles: summed in Python per bucket, then one upsert statement for all of them.

    Runs inside ``trades_book``'s transaction, under its caller's contract locks (``ccp.locks`` 3), which
    serialise the candle rows of a contract; rows are written in key order. Not idempotent by itself:
    ``trades_book`` passes only trades it has just inserted, so each trade counts once."""
    if trades:
        writes_send([candles_write(trades=trades, now=now)])


def candles_write(*, trades: Sequence[Mapping], now: datetime) -> Write:
    """``candles_record``'s upsert of these trades (at least one), not sent (``ccp.db.writes_send``)."""
    now = require_aware(now)
    rows = [{"contract_id": contract_id, "interval": interval, "bucket_start": start, "open": bar.open,
             "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume,
             "trade_count": bar.trade_count, "first_sequence": bar.first_sequence,
             "last_sequence": bar.last_sequence, "updated_at": now}
            for (contract_id, interval, start), bar in bars_of(trades).items()]
    return upsert_write(Candle, rows, key=["contract_id", "interval", "bucket_start"], merge=_CANDLE_MERGE)


def trades_publish(*, trades: Sequence[Mapping], symbols: Mapping[int, str] | None = None) -> None:
    """After commit, send each of ``trades`` (``trades_book``'s rows) to its contract's public trade
    stream (``ws/v1/trades/<symbol>``), in the given order (each contract's in sequence order). ``symbols``:
    contract id -> symbol, when the caller has them; else (or when one is missing) they are read."""
    if not trades:
        return
    wanted = sorted({t["contract_id"] for t in trades})
    if symbols is None or any(contract_id not in symbols for contract_id in wanted):
        with connection.cursor() as cursor:  # plain SQL: compiling a queryset cost the matcher more than the query
            cursor.execute(f"SELECT id, symbol FROM {Contract._meta.db_table} WHERE id = ANY(%s)", [wanted])
            symbols = dict(cursor.fetchall())
    texts: dict[object, str] = {}  # a booking repeats its prices, quantities and time: format each once

    def text(value, render) -> str:
        out = texts.get(value)
        if out is None:
            out = texts[value] = render(value)
        return out

    by_contract: dict[int, list[dict]] = {}
    for trade in trades:
        by_contract.setdefault(trade["contract_id"], []).append({
            "type": "trade", "contract": symbols[trade["contract_id"]], "sequence": trade["sequence"],
            "id": trade["id"], "price": text(trade["price"], money_str), "quantity": text(trade["quantity"], money_str),
            "aggressor_side": trade["aggressor_side"], "executed_at": text(trade["executed_at"], iso_utc),
            "venue": str(trade["venue"]), "venue_ref": trade["venue_ref"]})
    for contract_id, events in by_contract.items():
        stream_publish_many(trades_group(contract_id), events)


def books_bbo_publish(*, levels: Mapping[int, Iterable[tuple[str, Decimal]]], sequences: Mapping[int, int],
                      bbo: Mapping[int, Mapping] | None = None) -> None:
    """After commit, send a ``book.bbo`` (``bid``, ``bid_quantity``, ``ask``, ``ask_quantity``; null on an
    empty side) on the book stream of each contract whose best bid or offer the changed ``levels``
    (contract id -> (side, price)) moved: a changed level at or better than the best of its side now
    is the best (new, or its quantity changed) or was a better one that left. A change behind the best
    sends none. Called by ``books_levels_changed`` after it numbered the changes, in the same
    transaction: the message carries the contract's last ``sequences`` number, that of the change
    that moved the best, and follows its ``book.level`` (it is not a number of its own). ``bbo``: each
    contract's best bid and offer as ``books_bbo`` gives them, when the caller read them already."""
    levels = {contract_id: list(lv) for contract_id, lv in levels.items()}
    contract_ids = sorted(contract_id for contract_id, lv in levels.items() if lv)
    if not contract_ids:
        return
    best = books_bbo(contract_ids=contract_ids) if bbo is None else bbo
    for contract_id in contract_ids:
        if any(_at_or_better(side, price, best[contract_id]) for side, price in levels[contract_id]):
            stream_publish(book_group(contract_id), {"type": "book.bbo", "sequence": sequences[contract_id],
                                                     **bbo_payload(best[contract_id])})


def bbo_payload(bbo: Mapping) -> dict:
    """A ``bbo_of`` as the book stream sends it: prices and quantities as decimal strings, or null."""
    return {key: None if value is None else money_str(value) for key, value in bbo.items()}


def _at_or_better(side: str, price: Decimal, bbo: Mapping) -> bool:
    """Whether a level at ``price`` on ``side`` is at or better than that side's best (or the side is empty)."""
    best = bbo["bid" if side == Side.BUY else "ask"]
    return best is None or (price >= best if side == Side.BUY else price <= best)
