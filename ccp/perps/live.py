"""The liquidation engine's live index: the liquidation price of every isolated position of a perpetual, in this
process's memory (``ccp.perps.index.PriceIndex``), brought up to date from PostgreSQL before each use by reading
only the positions written since the last sync. A crash tick's crossed positions are then two slices per
maintenance tier, not hundreds of thousands of rows handed out of PostgreSQL (``ccp.perps.watch.isolated_reached``,
the probe the service used before, kept for the bench and the tests).

What a sync reads. Every INSERT and UPDATE of ``risk_position`` sets ``Position.written_xid`` to the writing
transaction's id (the trigger ``risk_position_written``: every writer goes through it, the ORM, the bulk upserts,
COPY, ``QuerySet.update``). A sync reads the contract's rows with ``written_xid >= W``, then ``W`` becomes the
``xmin`` of a snapshot taken just before that read (``pg_snapshot_xmin(pg_current_snapshot())``, lowered to the
syncing transaction's own id when it has one): every transaction below it had ended before the read began, so
the read saw whatever it committed. A transaction still in flight at a sync is at or above ``W``: the next syncs
read its rows again until one starts after it ended. Reading a row twice is harmless (the index takes the row as
it is). The first use in a process, and a change of the perpetual's tick or tiers, builds the whole index from
the contract's rows the same way (``W`` taken before the read).

Rows the syncing transaction wrote itself and has not committed are visible to it alone: they are noted and read
again by id at the next sync, so a rollback (of a savepoint or of the whole transaction) leaves nothing behind.

What it holds: one book per maintenance tier (the tier of the position's size), each side ordered most crossed
first, the price in ticks (``Position.liquidation_key``: a long's at or above the mark is crossed, a short's at or
below; a position without one, cross, flat or never liquidated, is not in it). ``Crossing`` lists a mark's
crossed positions worst first: by equity over requirement at the mark as their stored price gives it (a long's
``(M - L (1 - k)) / (k M)``, a short's ``(L (1 + k) - M) / (k M)``, ``k`` the tier's rate plus the liquidation
fee, whatever the size), ties by position id: the tiers' and sides' lists merged lazily, so taking the first
hundred costs a hundred comparisons. Stored prices are the first tick that liquidates, so for a mark on the tick
grid the crossed set is exactly the liquidatable set; an entry the database has changed since is harmless: the
engine reads each position it takes and checks it exactly (``ccp.perps.services``).

Per process: a dict keyed by database and contract id, one lock per contract (a worker's threads share it).
Nothing is shared between processes, so a restarted worker builds its index from the journal on its first check.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.db import connection

from ccp.perps.index import LONG, SHORT, Crossed, PriceIndex
from ccp.perps.margin import Tier
from ccp.perps.watch import Reached


@dataclass
class Synced:
    """What one sync (or build) did: rows read, and whether it was a build."""

    rows: int
    built: bool


@dataclass
class LiveIndex:
    """One perpetual's live index (module docstring)."""

    tick: Decimal
    tiers: tuple[Tier, ...]
    index: PriceIndex = field(default_factory=PriceIndex)
    watermark: int | None = None  # None: not built yet
    own: frozenset[int] = frozenset()  # read while written by the syncing transaction, not committed yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sync(self, contract_id: int) -> Synced:
        """Bring the index up to date (build it on first use): module docstring."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT least(pg_snapshot_xmin(pg_current_snapshot()), "
                           "pg_current_xact_id_if_assigned())::text::bigint, "
                           "pg_current_xact_id_if_assigned()::text::bigint")
            watermark, own_xid = cursor.fetchone()
            sql, params = self._select(contract_id)
            built = self.watermark is None
            if built:
                cursor.execute(sql + " AND liquidation_key IS NOT NULL", params)
            elif self.own:
                cursor.execute(sql + " AND (written_xid >= %s OR id = ANY(%s))",
                               [*params, self.watermark, sorted(self.own)])
            else:
                cursor.execute(sql + " AND written_xid >= %s", [*params, self.watermark])
            rows = cursor.fetchall()
        if built:
            self.index = PriceIndex((key, tier, LONG if long else SHORT, ticks) for key, long, ticks, tier, _ in rows)
        else:
            seen = {key for key, *_ in rows}
            for key in self.own - seen:  # rolled back: its row is gone
                self.index.discard(key)
            for key, long, ticks, tier, _ in rows:
                self.index.set(key, contract=tier, side=LONG if long else SHORT, ticks=ticks)
        self.own = frozenset(key for key, *_, xid in rows if own_xid is not None and xid == own_xid)
        self.watermark = watermark
        return Synced(rows=len(rows), built=built)

    def _select(self, contract_id: int) -> tuple[str, list]:
        """The rows' (id, long, price in ticks or NULL, tier, written_xid): a long's ticks rounded down and a
        short's up (their stored prices are on the grid: exact)."""
        bounds = [tier.up_to for tier in self.tiers if tier.up_to is not None]  # tier_of's: the first that fits
        tier = "".join(f"WHEN abs(quantity) <= %s THEN {number} " for number in range(len(bounds)))
        tier = f"CASE {tier}ELSE {len(bounds)} END" if bounds else "0"
        return ("SELECT id, liquidation_key > 0, (CASE WHEN liquidation_key > 0 THEN floor(liquidation_key / %s) "
                f"ELSE ceil(-liquidation_key / %s) END)::bigint, {tier}, written_xid "
                "FROM risk_position WHERE contract_id = %s", [self.tick, self.tick, *bounds, contract_id])

    def crossing(self, *, mark: Decimal, fee_rate: Decimal) -> Crossing:
        at = mark / self.tick
        longs, shorts = int(at.to_integral_value(ROUND_CEILING)), int(at.to_integral_value(ROUND_FLOOR))
        return Crossing(mark=mark, tick=self.tick, parts=[
            (tier, self.tiers[tier].rate + fee_rate, self.index.crossed(tier, longs, short_mark=shorts))
            for tier in sorted(self.index.books())])


class Crossing:
    """The isolated positions a mark crossed on one perpetual (their ids), as the live index held them: ``len``
    without walking them, iteration worst first (module docstring)."""

    def __init__(self, *, mark: Decimal, tick: Decimal, parts: Sequence[tuple[int, Decimal, Crossed]]):
        self.mark, self.tick = mark, tick
        self._parts = [(side, k, crossed) for _, k, crossed in parts for side in (LONG, SHORT)
                       if crossed.side_count(side)]

    def __len__(self) -> int:
        return sum(crossed.side_count(side) for side, _, crossed in self._parts)

    def __iter__(self) -> Iterator[int]:
        if len(self._parts) == 1:
            side, _, crossed = self._parts[0]
            return (key for _, key in crossed.entries(side))
        return (key for _, key in heapq.merge(*(self._ranked(side, k, crossed) for side, k, crossed in self._parts)))

    def _ranked(self, side: str, k: Decimal, crossed: Crossed) -> Iterator[tuple[Decimal, int]]:
        """(equity over requirement at the mark times the mark, the position id) of one side of one tier, most
        crossed first: computed only for the entries the merge takes."""
        mark, tick = self.mark, self.tick
        for ticks, key in crossed.entries(side):
            price = ticks * tick
            yield ((mark - price * (1 - k)) if side == LONG else (price * (1 + k) - mark)) / k, key


_indexes: dict[tuple, LiveIndex] = {}
_indexes_lock = threading.Lock()


def _live(contract_id: int, tick: Decimal, tiers: Sequence[Tier]) -> LiveIndex:
    settings = connection.settings_dict
    where = (settings["HOST"], settings["PORT"], settings["NAME"], contract_id)
    with _indexes_lock:
        live = _indexes.get(where)
        if live is None or live.tick != tick or live.tiers != tuple(tiers):  # a new grid or tiers: built again
            live = _indexes[where] = LiveIndex(tick=tick, tiers=tuple(tiers))
        return live


def isolated_crossed(*, contract, perpetual, mark: Decimal) -> Crossing:
    """The perpetual's isolated positions whose liquidation price ``mark`` has reached, worst first, from this
    process's live index, synced first (built on first use). Reads, locks nothing: the caller that takes them
    reads each one again (``positions_read``)."""
    return isolated_crossed_synced(contract=contract, perpetual=perpetual, mark=mark)[0]


def isolated_crossed_synced(*, contract, perpetual, mark: Decimal) -> tuple[Crossing, Synced]:
    """``isolated_crossed`` and what its sync read (the bench's)."""
    live = _live(contract.pk, contract.tick_size, perpetual.tier_list)
    with live.lock:
        synced = live.sync(contract.pk)
        return live.crossing(mark=mark, fee_rate=perpetual.liquidation_fee_rate), synced


def live_indexes_drop() -> None:
    """Forget every live index of this process: the next check builds its index from the database, as a
    restarted worker does."""
    with _indexes_lock:
        _indexes.clear()


def positions_read(position_ids: Sequence[int]) -> list[Reached]:
    """These positions as they are now, those still isolated and open: the columns the exact check needs."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, client_id, quantity, cost, margin FROM risk_position WHERE id = ANY(%s) "
                       "AND margin_mode = 'isolated' AND quantity <> 0", [list(position_ids)])
        return [Reached._make(row) for row in cursor.fetchall()]
