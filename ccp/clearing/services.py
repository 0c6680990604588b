"""Booking trades: the ledger every venue writes through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.db import transaction

from ccp.clearing.models import Trade, Venue
from ccp.clock import require_aware
from ccp.db import (
    FEW_INSERTS,
    Behind,
    Sent,
    bulk_insert_rows,
    bulk_insert_write,
    number_array,
    write_behind,
    write_held,
)
from ccp.marketdata.services import candles_record, candles_write, trades_publish


class Execution(NamedTuple):
    """A trade a venue matched, before it is booked (immutable; a named tuple: an auction makes tens of
    thousands, and a frozen dataclass's __init__ costs three times as much)."""

    contract_id: int
    price: Decimal
    quantity: Decimal
    buy_order_id: int
    buy_client_id: int
    sell_order_id: int
    sell_client_id: int
    aggressor_side: str | None = None


# One statement for what booking needs before its insert: which executions are not booked yet (by venue,
# venue ref, buy order, sell order: the unique constraint's key), each one's contract's last sequence, and
# an id per fresh execution. The ids come from the sequence in any order: the caller hands them out sorted.
_FRESH = """
    WITH e AS (
        SELECT * FROM unnest(%(buys)s::bigint[], %(sells)s::bigint[], %(contracts)s::bigint[])
            WITH ORDINALITY AS e(buy_order_id, sell_order_id, contract_id, n)
    ), fresh AS (
        SELECT e.n, e.contract_id FROM e WHERE NOT EXISTS (
            SELECT 1 FROM clearing_trade AS t WHERE t.venue = %(venue)s AND t.venue_ref = %(venue_ref)s
            AND t.buy_order_id = e.buy_order_id AND t.sell_order_id = e.sell_order_id)
    ), last AS (
        SELECT c.id, (SELECT max(t.sequence) FROM clearing_trade AS t WHERE t.contract_id = c.id) AS sequence
        FROM (SELECT DISTINCT contract_id AS id FROM fresh) AS c
    )
    SELECT f.n, nextval(pg_get_serial_sequence('clearing_trade', 'id')), l.sequence
    FROM fresh AS f JOIN last AS l ON l.id = f.contract_id
"""


def trades_fresh_sent(*, venue: Venue, venue_ref: str, executions: Sequence[Execution]) -> Sent:
    """``trades_book``'s first statement (``_FRESH``) sent (``ccp.db.Sent``), for ``trades_book``'s ``fresh``."""
    return Sent(_FRESH, {"buys": number_array(e.buy_order_id for e in executions),
                         "sells": number_array(e.sell_order_id for e in executions),
                         "contracts": number_array(e.contract_id for e in executions),
                         "venue": venue, "venue_ref": venue_ref})


# No savepoint of its own inside its caller's transaction: its events then go out with the caller's in
# one batch after the commit (an auction's 30,000 public trades), and a failure fails the caller anyway.
@transaction.atomic(savepoint=False)
def trades_book(*, venue: Venue, venue_ref: str, executions: Sequence[Execution], now: datetime,
                symbols: Mapping[int, str] | None = None, behind: Behind | None = None,
                fresh: Sent | None = None) -> list[dict]:
    """Book ``executions`` as trades of ``venue``'s event ``venue_ref``, each contract's numbered on
    from its last sequence in the given order. Returns the booked rows (dicts by attribute name, with
    ``id`` and ``sequence``), in the given order.

    Idempotent per trade: an execution whose (venue, venue ref, buy order, sell order) is already
    booked is left out (the unique constraint ``trade_unique_venue_orders`` backs this up). The caller
    holds the contracts' rows (``ccp.locks`` 3): that makes the sequence read here the last one.
    The booked trades go into the candles and, after commit, to the public trade stream
    (``ccp.marketdata``); the caller publishes the rest. ``symbols``: contract id -> symbol of the contracts
    the caller holds (their stream events name them: not read again). ``behind``: the caller's writer on a
    thread (``ccp.db.Behind``), which then writes the rows and the candles while the caller goes on. ``fresh``:
    its first statement, sent by the caller (``trades_fresh_sent`` of the same executions: in a
    ``ccp.db.one_round_trip`` with its own)."""
    now = require_aware(now)
    if not executions:
        return []
    found = (fresh or trades_fresh_sent(venue=venue, venue_ref=venue_ref, executions=executions)).result()
    if not found:
        return []
    found.sort()
    fresh = [executions[n - 1] for n, _, _ in found]
    last = {executions[n - 1].contract_id: sequence or 0 for n, _, sequence in found}
    ids = sorted(trade_id for _, trade_id, _ in found)
    rows = []
    for trade_id, e in zip(ids, fresh, strict=True):
        last[e.contract_id] += 1
        rows.append({"id": trade_id, "venue": venue, "venue_ref": venue_ref, "contract_id": e.contract_id,
                     "sequence": last[e.contract_id], "price": e.price, "quantity": e.quantity,
                     "buy_order_id": e.buy_order_id, "buy_client_id": e.buy_client_id,
                     "sell_order_id": e.sell_order_id, "sell_client_id": e.sell_client_id,
                     "aggressor_side": e.aggressor_side, "executed_at": now})
    if len(rows) <= FEW_INSERTS:  # two writes the caller's ``behind`` may send with its next ones
        write_held(behind, bulk_insert_write(Trade, rows, with_pk=True))
        write_held(behind, candles_write(trades=rows, now=now))
    else:
        write_behind(behind, lambda: (bulk_insert_rows(Trade, rows, with_pk=True),
                                      candles_record(trades=rows, now=now)))
    trades_publish(trades=rows, symbols=symbols)
    return rows
