"""The continuous venue: a contract in ``continuous`` trading mode is matched by its matcher, one batch of
received orders at a time, through the pure engine (``ccp.book.engine``) and booked through the clearing
core (``ccp.clearing.booking.trades_clear``).

A matcher run (``books_match``) takes the batches of several contracts at once: the contract its task names
and every other continuous contract of the same Celery queue (``ccp.book.tasks.book_queue``: id modulo
``CCP_BOOK_QUEUES``) with received orders or modifications waiting when the run starts, at most
``CCP_BOOK_BATCH`` orders and modifications in all, the earliest first. They are matched and written in one
transaction with one set of statements (the contracts' locks, the orders' lock, the fund locks, the clients'
read, one booking through the clearing core, one publish): under load a queue's contracts each receive a few
orders per batch, and that fixed cost, once per contract, was most of a batch's. Each contract keeps
everything of its own: its engine, its arrival order, its book version (bumped by the run), its events in
their order (one ``book`` message per client and contract). A client's orders on two contracts of one run
share its fund lock: each check counts what the run's earlier orders took, on any contract.

One writer per contract, enforced by the database: a run holds its contracts' row locks (``ccp.locks`` 3,
taken in id order) from the moment it reads the received orders until it commits, and every service that
changes a contract's orders holds that lock too (order entry's cancel, a halt, a trading-mode change).
Two matchers pointed at one contract therefore run one after the other, never both at once.

Durable before visible: a run's acceptances, rejections, trades, order states, positions, lockups and
fund locks commit in one transaction; its stream events, the public trades and the answers to the
waiting requests go out after that commit. A run that fails (or a process killed mid-run) leaves
nothing: its orders are still 'received' and the next run takes them again, in the same order.

The engine in memory is a cache of the database: each process keeps one per contract with the book
version (``BookVersion``) it matches. Each batch bumps that version, and so does every change of the
contract's orders made outside the matcher (a cancel, a size decrease, a halt, a mode change), and of its
positions (a liquidation's takeover or ADL: the engine's reduce-only rule reads them), in the same
transaction; a batch that finds the version moved (a cancel, another process's batch, a restart) rebuilds
the engine from the database first: the resting orders in time priority
(``Order.book_priority``) with their take-profit and stop-loss legs, the armed stop and take-profit
orders in arming order (``Order.trigger_priority``), the positions, the last trade price. With the engine
it keeps the rows of the orders the engine rests or arms as the batch that last changed them committed
them, so a taker does not read again the orders it meets; a queued modification (which changes its row
without bumping the version) drops its order from them.

Prices: each batch gives the engine the contract's current mark and index (fresh ones only, rounded
half-even to ticks), which fires the stop and take-profit orders they cross; ``book_prices_moved`` queues
the matchers of contracts with orders waiting on them after each price update.

Arrival order is the time of entry, then the order ids' order; a run takes at most ``CCP_BOOK_BATCH`` orders.
Each incoming order is checked (the order rules, the open-order cap, then available collateral as the run
found it less what earlier orders of the run took: the clearing core's one rule) before the engine sees
it, and holds its worst case (``order_value``: a market order's at its protection price) while it rests.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db import connection, transaction

from ccp.accounts.services import balance_events, balances_publish, fund_locks_adjust
from ccp.book import engine as ev
from ccp.book.engine import Cancel, Engine, Leg, Modify, PlaceTrigger, Scale, SetPrice, Submit
from ccp.book.versions import books_numbered, books_touched
from ccp.clearing.booking import order_state_set, trades_clear
from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution
from ccp.clock import require_aware
from ccp.contracts.models import Contract, TradingMode
from ccp.contracts.payoffs import mark_px
from ccp.db import (
    FEW_ROWS,
    Behind,
    Columns,
    Sent,
    bulk_insert_rows,
    bulk_insert_write,
    bulk_update_rows,
    bulk_update_write,
    ids_reserve,
    one_round_trip,
    times_loaded_in_c,
)
from ccp.errors import ApplicationError, Conflict, NotFound
from ccp.locks import (
    RUN_CONTRACTS,
    FundLocksBusy,
    book_contracts_sent,
    book_lock,
    contract_lock,
    fund_locks_sent,
    order_lock,
)
from ccp.money import ZERO
from ccp.orders.models import Order, OrderKind, OrderStateHistory, TimeInForce, Trigger, TriggerSource
from ccp.orders.results import order_results_signal, result_json
from ccp.orders.rules import REASONS, order_held, order_value
from ccp.orders.serializers import order_payload
from ccp.orders.services import (
    OrderRequest,
    books_levels_changed,
    order_cancel,
    order_submit,
    order_violation,
    orders_validate_later,
)
from ccp.orders.states import BOOK_STATES, HOLDING_STATES, OrderState
from ccp.perps.accounting import CROSS
from ccp.perps.cross import LOSS_SQL, losses_of
from ccp.perps.margin import close_bound, to_tick
from ccp.perps.selectors import mark_fresh, tpsl_prefix
from ccp.prices.selectors import index_by_pair
from ccp.risk.collateral import available
from ccp.risk.models import Position
from ccp.streams import client_stream_publish, client_stream_publish_taken


@dataclass
class Book:
    """A contract's engine and what ties it to the database."""

    engine: Engine
    scale: Scale
    version: int  # the contract's book version (``BookVersion``) the engine matches
    priority: int  # the engine's last resting sequence (the next order that rests gets priority + 1)
    # The engine's resting and armed orders as the last batch committed them, by engine id: a batch reads
    # from the database only those it has not (a rebuild starts empty; a queued modification evicts one).
    orders: dict[str, Order] = field(default_factory=dict)
    # Engine ids that may wait on the mark or index (``_prices_matter``): a superset, pruned each batch.
    watching: set[str] = field(default_factory=set)


logger = logging.getLogger(__name__)

# This process's engines, by contract id: a cache of the database (see the module docstring).
_BOOKS: dict[int, Book] = {}

# Tests only (tests/book/test_matcher_kill.py): "point:n" kills this process with SIGKILL the n-th time a
# batch reaches the point ("matched": the engine ran, nothing written; "written": everything written,
# not committed; "committed": just after the commit).
_FAILPOINT = os.environ.get("CCP_BOOK_FAILPOINT", "")
_failpoint_hits: dict[str, int] = defaultdict(int)


def failpoint(name: str) -> None:
    if _FAILPOINT and _FAILPOINT.partition(":")[0] == name:
        _failpoint_hits[name] += 1
        if _failpoint_hits[name] == int(_FAILPOINT.partition(":")[2] or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def engine_id(order) -> str:
    """An order's id in the engine: its own, or ``<entry id>:tp`` / ``<entry id>:sl`` for a leg its entry
    armed (the engine names legs so)."""
    return f"{order.parent_id}:{order.leg}" if order.leg else str(order.pk)


def _engine_leg(spec: dict | None, scale: Scale) -> Leg | None:
    """An ``Order.attached`` leg as the engine takes it."""
    if spec is None:
        return None
    price = scale.ticks(Decimal(spec["price"]))
    limit = spec["kind"] == OrderKind.LIMIT
    return Leg(scale.ticks(Decimal(spec["trigger_price"])), spec["trigger_source"], price if limit else None,
               None if limit else price)


def _leg_snapshot(spec: dict | None, scale: Scale) -> dict | None:
    """An ``Order.attached`` leg as an engine snapshot has it (the fields of ``Leg``)."""
    return None if spec is None else asdict(_engine_leg(spec, scale))


_REBUILD_FIELDS = ("id", "client_id", "side", "kind", "price", "quantity", "filled_quantity", "time_in_force",
                   "reduce_only", "self_trade_prevention", "book_priority", "state", "trigger", "trigger_price",
                   "trigger_source", "trigger_priority", "parent_id", "leg", "attached", "triggered_at")


def book_rebuild(contract: Contract, version: int) -> Book:
    """The contract's engine as the database has it: resting orders in time priority (with the legs they
    carry and the state of those legs), armed stop and take-profit orders in arming order, positions in
    lots, the last trade's price. Mark and index start unknown: the batch gives the current ones, which
    fires what they cross, as the engine it replaces would have. The caller holds the contract's row."""
    scale = Scale(contract.tick_size, contract.lot_size)
    rows = list(Order.objects.filter(contract=contract, state__in=HOLDING_STATES).values(*_REBUILD_FIELDS))
    entries = [r["id"] for r in rows if r["attached"] and r["state"] in BOOK_STATES]
    legs: dict[int, dict[str, dict]] = defaultdict(dict)
    for leg in Order.objects.filter(parent_id__in=entries).values("parent_id", "leg", "state", "triggered_at"):
        legs[leg["parent_id"]][leg["leg"]] = leg
    orders, triggers = [], []
    for row in sorted(rows, key=lambda r: (r["book_priority"] or 0, r["id"])):
        if row["state"] not in BOOK_STATES:
            continue
        quantity, filled = scale.lots(row["quantity"]), scale.lots(row["filled_quantity"])
        attached, mine = row["attached"] or {}, legs.get(row["id"], {})
        states = {name: None if name not in mine else (f"{row['id']}:{name}" if mine[name]["state"] ==
                                                          OrderState.UNTRIGGERED else "gone") for name in ("tp", "sl")}
        orders.append({
            "order_id": engine_id(_Row(row)), "user": row["client_id"], "side": row["side"], "kind": row["kind"],
            "price": scale.ticks(row["price"]), "qty": quantity, "remaining": quantity - filled, "filled": filled,
            "tif": row["time_in_force"], "reduce_only": row["reduce_only"], "stp": row["self_trade_prevention"],
            "seq": row["book_priority"] or 0, "tp": _leg_snapshot(attached.get("tp"), scale),
            "sl": _leg_snapshot(attached.get("sl"), scale), "tp_state": states["tp"],
            "sl_state": states["sl"], "legs_done": any(leg["triggered_at"] for leg in mine.values())})
    armed = {engine_id(_Row(r)): r for r in rows if r["state"] == OrderState.UNTRIGGERED}
    for trigger_id, row in sorted(armed.items(), key=lambda item: (item[1]["trigger_priority"] or 0, item[1]["id"])):
        price = scale.ticks(row["price"])
        sibling = f"{row['parent_id']}:{'sl' if row['leg'] == 'tp' else 'tp'}" if row["leg"] else None
        triggers.append({
            "trigger_id": trigger_id, "user": row["client_id"], "side": row["side"], "qty": scale.lots(row["quantity"]),
            "trigger_px": scale.ticks(row["trigger_price"]), "up": (row["side"] == "buy") == (row["trigger"] == "stop"),
            "source": row["trigger_source"], "limit_px": price if row["kind"] == OrderKind.LIMIT else None,
            "protection_px": None if row["kind"] == OrderKind.LIMIT else price, "reduce_only": row["reduce_only"],
            "stp": row["self_trade_prevention"], "seq": row["trigger_priority"] or 0,
            "sibling": sibling if sibling in armed else None})
    positions = {client_id: scale.lots(quantity) for client_id, quantity in
                 Position.objects.filter(contract=contract).exclude(quantity=0).values_list("client_id", "quantity")}
    last = Trade.objects.filter(contract=contract).order_by("-sequence").values_list("price", flat=True).first()
    priority = max((r["book_priority"] or 0 for r in rows), default=0)
    engine = Engine.from_snapshot({
        "orders": orders, "triggers": triggers, "positions": positions,
        "prices": {"last": None if last is None else scale.ticks(last), "mark": None, "index": None},
        "counters": {"order_seq": priority, "trade_seq": 0,
                     "trigger_seq": max((r["trigger_priority"] or 0 for r in rows), default=0)}})
    return Book(engine, scale, version, priority, watching=_watching(engine))


class _Row:
    """A row of ``book_rebuild`` read as an order (for ``engine_id``)."""

    def __init__(self, row: dict):
        self.pk, self.parent_id, self.leg = row["id"], row["parent_id"], row["leg"]


_PRICE_SOURCES = (TriggerSource.MARK, TriggerSource.INDEX)


def _on_prices(order: Order) -> bool:
    """The order waits on the mark or index, or carries a leg that will."""
    return order.trigger_source in _PRICE_SOURCES or any(
        leg["trigger_source"] in _PRICE_SOURCES for leg in (order.attached or {}).values())


def _watching(engine: Engine) -> set[str]:
    """The engine ids of the stop and take-profit orders waiting on the mark or index, and of the resting
    orders carrying a leg on one (scanned once, when an engine is rebuilt)."""
    return ({trigger_id for trigger_id, trigger in engine.triggers.items() if trigger.source in _PRICE_SOURCES}
            | {order_id for order_id, order in engine.orders.items()
               if any(leg is not None and leg.source in _PRICE_SOURCES for leg in (order.tp, order.sl))})


def _prices_matter(book: Book, incoming: list[Order]) -> bool:
    """Whether the batch must give the engine the mark and index: an order waits on one of them, or may
    arm one (an entry with a leg on one), or arrives with one (a trigger reads only its own source).
    Otherwise the engine's mark and index are left as they are: no order reads them until a batch where
    one does, and that batch gives the current ones first (to an engine in memory and to a rebuilt one
    alike). The engine matches the database (its version is current), so it is asked, not the database:
    through ``Book.watching``, every engine id that may wait on those prices (the rebuild's scan, then each
    batch's incoming orders that do), less those no longer in the engine (an entry counts while a leg it
    armed waits), instead of scanning every resting order each batch."""
    engine, watching = book.engine, book.watching
    arriving = [o for o in incoming if _on_prices(o)]
    watching.difference_update([engine_order_id for engine_order_id in watching
                                if engine_order_id not in engine.orders and engine_order_id not in engine.triggers
                                and f"{engine_order_id}:tp" not in engine.triggers
                                and f"{engine_order_id}:sl" not in engine.triggers])
    matter = bool(arriving or watching)
    watching.update(engine_id(o) for o in arriving)
    return matter


def _engine_prices(contract: Contract, scale: Scale, now: datetime) -> dict[str, int]:
    """The contract's mark and index now (fresh ones only), in ticks (half-even)."""
    index = index_by_pair(now=now).get(contract.pair_id)
    if index is None:
        return {}
    # A perpetual's own mark (the index plus its damped basis), if fresh (ccp.perps); else the contract's rule.
    mark = mark_fresh(contract.perpetual, now=now) if contract.is_perpetual else mark_px(contract.terms, index)
    prices = {"index": index} if mark is None else {"mark": mark, "index": index}
    return {source: int((price / scale.tick).to_integral_value(ROUND_HALF_EVEN)) for source, price in prices.items()}


# The engine order ids each event names.
_NAMING = {ev.Trade: ("buy_order_id", "sell_order_id"), ev.Rested: ("order_id",), ev.Cancelled: ("order_id",),
           ev.Accepted: ("order_id",), ev.Rejected: ("order_id",), ev.Triggered: ("trigger_id",),
           ev.Armed: ("trigger_id",)}


@dataclass
class _Run:
    """What one matcher run shares across its contracts' batches: one transaction, one set of statements."""

    now: datetime
    fund_keys: frozenset[tuple[int, int]] = frozenset()  # fund locks to take with the incoming orders' clients'
    nowait: bool = False  # the booking takes other fund locks without waiting (``books_match``)
    touched: dict[int, Order] = field(default_factory=dict)  # orders changed outside trades_clear
    histories: list[dict] = field(default_factory=list)
    # Order value taken (or given back) per (client, currency) over the whole run: a client's orders on two
    # contracts of one run share its fund lock, so each check counts what the earlier ones took.
    held: dict[tuple[int, int], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    open_counts: dict[int, int] = field(default_factory=dict)  # orders holding collateral, by client (all contracts)
    fund_locks: dict = field(default_factory=dict)  # the fund locks the run locked, by (client, currency)
    losses: dict[int, dict[int, Decimal]] = field(default_factory=dict)  # currency -> client -> unrealised cross loss
    positions: dict[int, dict[int, tuple]] = field(default_factory=dict)  # perpetual -> client -> position
    created: list[Order] = field(default_factory=list)  # legs armed for the first time, inserted at the write
    spare_ids: list[int] = field(default_factory=list)  # order ids reserved for them
    texts: dict[int, str] = field(default_factory=dict)  # the incoming orders' results as signalled (result_json)


@dataclass
class _Batch:
    """What one contract's batch of a run decided, before it is written."""

    run: _Run
    contract: Contract
    book: Book
    incoming: list[Order]  # in arrival order
    by_engine_id: dict[str, Order]  # every order the batch touched, by its engine id
    executions: list[Execution] = field(default_factory=list)
    cancels: dict[int, str] = field(default_factory=dict)  # orders on the book cancelled (trades_clear)
    levels: set[tuple[str, Decimal]] = field(default_factory=set)  # levels changed outside trades_clear
    costs: dict[int, Decimal] = field(default_factory=dict)  # what each incoming order will hold
    stale: list[Order] = field(default_factory=list)  # position take-profits and stop-losses to cancel first
    moved: list[SetPrice] = field(default_factory=list)  # then the prices that moved

    def order_id_take(self) -> int:
        """An id for a new order (reserved a few at a time: one statement for the legs of a run)."""
        if not self.run.spare_ids:
            self.run.spare_ids.extend(ids_reserve(Order, 8))
        return self.run.spare_ids.pop(0)

    def order(self, engine_order_id: str) -> Order:
        """The order the engine names (``orders_read`` read it with the others of its command)."""
        return self.by_engine_id[engine_order_id]

    def orders_read(self, events: list) -> None:
        """Read, in one query, the orders a command's events name that the batch has not read yet (the
        resting orders a taker met, the armed orders that fired); a leg not armed before has no order yet.
        Resting orders are read, not locked: every writer of a contract's orders holds its row
        (``ccp.locks``)."""
        named = {getattr(event, name) for event in events for name in _NAMING.get(type(event), ())}
        missing = named - self.by_engine_id.keys()
        cached = self.book.orders
        for engine_order_id in [i for i in missing if i in cached]:
            order = self.by_engine_id[engine_order_id] = cached[engine_order_id]
            order.contract = self.contract
            missing.discard(engine_order_id)
        if not missing:
            return
        plain = sorted(int(i) for i in missing if ":" not in i)
        legs = [i.partition(":") for i in missing if ":" in i]
        columns = Columns.of(Order)
        with connection.cursor() as cursor:  # plain SQL: compiling a queryset cost more than the query
            times_loaded_in_c(cursor)
            cursor.execute(f"SELECT {columns.select('o')} FROM orders_order AS o WHERE o.id = ANY(%s::bigint[]) "
                           "OR (o.parent_id = ANY(%s::bigint[]) AND o.leg = ANY(%s::text[])) ORDER BY o.id",
                           [plain, sorted({int(entry) for entry, _, _ in legs}), sorted({leg for _, _, leg in legs})])
            found = [columns.instance(row) for row in cursor.fetchall()]
        for order in found:
            order.contract = self.contract
            self.by_engine_id.setdefault(engine_id(order), order)

    def state_set(self, order: Order, state: str, reason: str = "") -> None:
        order_state_set(order, state, now=self.run.now, reason=reason, histories=self.run.histories)
        self.run.touched[order.pk] = order

    def hold_set(self, order: Order, value: Decimal) -> None:
        """Set what ``order`` holds; the difference is taken from (or given back to) its fund lock."""
        self.run.held[(order.client_id, self.contract.collateral_id)] += value - order.order_value
        order.order_value = value
        self.run.touched[order.pk] = order


def book_match(*, contract_id: int, now: datetime, limit: int | None = None) -> int:
    """``books_match`` of this contract alone; returns how many orders and modifications it took."""
    return sum(books_match(contract_id=contract_id, now=now, limit=limit).values())


# A run's makers are known only once it has matched: their fund locks are taken after those of its incoming
# orders' clients, without waiting (``FundLocksBusy``: waiting there could close a cycle with a transaction that
# holds one of them and waits for one of the run's, say another queue's matcher or an auction's apply). A run
# that finds one held elsewhere is rolled back (its engines are rebuilt) and run again with those fund locks
# among its first, up to BUSY_ATTEMPTS times; the last attempt waits for them.
BUSY_ATTEMPTS = 4
# The fund locks this process's runs found held elsewhere, with when a run last found them so or met their
# clients as makers (``time.monotonic``): each run takes those of the last BUSY_KEEP_S seconds among its first (a
# client met once is likely met again while its orders rest on the run's books), at most BUSY_KEPT of them.
BUSY_KEEP_S = 60.0
BUSY_KEPT = 1024
_BUSY: dict[tuple[int, int], float] = {}


def books_match(*, contract_id: int, now: datetime, limit: int | None = None, queues: int | None = None
                ) -> dict[int, int]:
    """One matcher run (``_books_match``), run again when a maker's fund lock is held elsewhere (``BUSY_ATTEMPTS``);
    returns how many orders and modifications each contract took."""
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        since = time.monotonic() - BUSY_KEEP_S
        while _BUSY and next(iter(_BUSY.values())) < since:  # the oldest first
            del _BUSY[next(iter(_BUSY))]
        try:
            return _books_match(contract_id=contract_id, now=now, limit=limit, queues=queues,
                                fund_keys=frozenset(_BUSY), nowait=attempt < BUSY_ATTEMPTS)
        except FundLocksBusy as busy:
            logger.info("matcher run of contract %s: %d fund locks held elsewhere (attempt %d of %d), run again "
                        "with them among its first", contract_id, len(busy.keys), attempt, BUSY_ATTEMPTS)
            _busy_note(busy.keys)
    raise AssertionError("unreachable: the last attempt waits for the fund locks")


def _busy_note(keys, *, known_only: bool = False) -> None:
    """Note these fund locks in ``_BUSY`` as of now (``known_only``: only those in it already), the latest last,
    the oldest dropped beyond BUSY_KEPT."""
    at = time.monotonic()
    for key in keys:
        if not known_only or key in _BUSY:
            _BUSY.pop(key, None)
            _BUSY[key] = at
    while len(_BUSY) > BUSY_KEPT:
        del _BUSY[next(iter(_BUSY))]


@transaction.atomic
def _books_match(*, contract_id: int, now: datetime, limit: int | None, queues: int | None,
                 fund_keys: frozenset[tuple[int, int]], nowait: bool) -> dict[int, int]:
    """One matcher run: match the next received orders and modifications of the contract and, with ``queues``
    (the matcher task's ``CCP_BOOK_QUEUES``), of every other continuous contract of its queue (id modulo
    ``queues``) with some waiting, at most ``limit`` (default ``CCP_BOOK_BATCH``) in all, in arrival order,
    after giving each engine its contract's current mark and index prices, and book the result, in one
    transaction; returns how many each contract took (the caller runs it again while they add up to the
    limit). Safe to run twice and concurrently (see the module docstring). A contract no longer continuous
    hands its received orders to the auctions' validation.

    Locks (``ccp.locks``): the contracts' books (shared) and rows in one statement, their received orders in
    one, the fund locks of their clients in one, then books through ``trades_clear`` once for all. Each
    contract keeps its own engine, book version and arrival order; the run is written as one (one order
    update, one history insert, one booking, one fund lock update, one results signal, one publish).

    Fund locks: the run's first fund lock statement takes its incoming orders' clients' and ``fund_keys``; with
    ``nowait``, the booking takes any other (the makers') without waiting (``FundLocksBusy``)."""
    now = require_aware(now)
    limit = limit or settings.CCP_BOOK_BATCH
    # The books (shared), then the contracts; then their orders: two statements in one round trip.
    with one_round_trip():
        contracts_sent, work_sent = book_contracts_sent(contract_id, queues=queues), _work_sent(limit)
    contracts = contracts_sent.result()
    incoming, versions, modifying = work_sent.result()
    if not contracts:
        return {}
    by_id = {c.pk: c for c in contracts}
    # Arrival order: new orders by their time of entry, modifications by theirs (then by id), over all the
    # run's contracts; the first ``limit`` of each read and locked in one statement, then the first ``limit``
    # of both kept.
    incoming = sorted(incoming, key=lambda o: (o.modify_requested_at or o.created_at, o.pk))[:limit]
    ids = [o.pk for o in incoming]
    mine: dict[int, list[Order]] = defaultdict(list)
    for order in incoming:
        order.contract = by_id[order.contract_id]
        mine[order.contract_id].append(order)
    run, batches, taken = _Run(now, fund_keys=fund_keys, nowait=nowait), [], {}
    for contract in contracts:
        if (batch := _batch_start(run, contract, mine.get(contract.pk, []), versions.get(contract.pk, 0),
                                  modifying)) is not None:
            batches.append(batch)
            taken[contract.pk] = len(batch.incoming)
    if not batches and not run.touched:
        return {}
    _batches_match(run, batches)
    failpoint("matched")
    payloads, new_versions = _run_write(run, batches)  # each batch's book version bumped
    if _BUSY:  # the makers met again stay among the first fund locks of the next runs
        _busy_note({(client_id, b.contract.collateral_id) for b in batches for e in b.executions
                    for client_id in (e.buy_client_id, e.sell_client_id)}, known_only=True)
    for batch in batches:
        book = batch.book
        for engine_order_id, order in batch.by_engine_id.items():
            if order.state in HOLDING_STATES:
                book.orders[engine_order_id] = order
            else:
                book.orders.pop(engine_order_id, None)
        book.version = new_versions[batch.contract.pk]
        transaction.on_commit(functools.partial(_BOOKS.__setitem__, batch.contract.pk, book))
    taken_ids = {o.pk for batch in batches for o in batch.incoming}
    order_results_signal([pk for pk in ids if pk in taken_ids], incoming, payloads, run.texts)
    transaction.on_commit(lambda: failpoint("committed"))
    failpoint("written")
    return taken


def _batch_start(run: _Run, contract: Contract, incoming: list[Order], version: int,
                 modifying: list[int]) -> _Batch | None:
    """A contract's batch of the run, its engine current (rebuilt when its version moved), with the prices
    that moved and the stale position take-profits and stop-losses to give it first; None when it has
    nothing to do (its engine is kept as it is), or when the contract is no longer continuous (its orders go
    to the auctions' validation, its modifications are refused)."""
    now = run.now
    if contract.trading_mode != TradingMode.CONTINUOUS:
        orders_validate_later([o for o in incoming if o.state == OrderState.RECEIVED])
        for order in incoming:  # written with the run's orders (its messages go last, as ccp.locks orders them)
            if order.modify_requested_at:
                order.modify_price = order.modify_quantity = order.modify_requested_at = None
                order.modify_reject_reason = "modify_not_in_auction"
                run.touched[order.pk] = order
        return None
    book = _BOOKS.pop(contract.pk, None)  # back only when this run commits
    stale: list[Order] = []
    if book is None or book.version != version:
        book = book_rebuild(contract, version)
        if contract.is_perpetual:
            stale = _position_tpsl_stale(contract, book)
    if modifying:  # their rows changed since the last batch (a leg on the book too): read them again
        waiting = set(modifying)
        for engine_order_id in [key for key, order in book.orders.items() if order.pk in waiting]:
            del book.orders[engine_order_id]
    prices_matter = _prices_matter(book, incoming)
    keep = functools.partial(_BOOKS.__setitem__, contract.pk, book)
    if not incoming and not prices_matter and not stale:
        transaction.on_commit(keep)
        return None
    moved = [SetPrice(source, price) for source, price in _engine_prices(contract, book.scale, now).items()
             if book.engine.prices[source] != price] if prices_matter else []
    if not incoming and not moved and not stale:
        transaction.on_commit(keep)
        return None
    return _Batch(run, contract, book, incoming, {engine_id(o): o for o in incoming}, stale=stale, moved=moved)


# The next received orders and next modifications of a run's contracts (each in arrival order, ``limit`` of each),
# locked (``ccp.locks`` 4), with the books' versions and the ids of every order with a modification waiting:
# one row with no order when none waits.
_WORK_LOCK = """
    WITH work AS MATERIALIZED (
        SELECT {columns} FROM orders_order WHERE orders_order.id IN (
            (SELECT id FROM orders_order WHERE contract_id = ANY({contracts}) AND state = %(received)s
             ORDER BY created_at, id LIMIT %(limit)s)
            UNION ALL
            (SELECT id FROM orders_order WHERE contract_id = ANY({contracts}) AND modify_requested_at IS NOT NULL
             ORDER BY modify_requested_at, id LIMIT %(limit)s))
        ORDER BY orders_order.id FOR NO KEY UPDATE OF orders_order)
    SELECT ARRAY(SELECT ARRAY[contract_id, version] FROM book_bookversion WHERE contract_id = ANY({contracts})),
           ARRAY(SELECT id FROM orders_order WHERE contract_id = ANY({contracts})
                 AND modify_requested_at IS NOT NULL),
           work.*
    FROM (SELECT) AS one LEFT JOIN work ON TRUE
"""


def _work_sent(limit: int) -> Sent:
    """The run's orders (``_WORK_LOCK``, locked in id order), the books' versions by contract and the orders
    with a modification waiting, in one statement, of the contracts the run's first statement locked
    (``book_contracts_sent``, ``RUN_CONTRACTS``): sent with it, in one round trip, it runs once they are locked
    (as every writer of the versions and of the contracts' orders holds them), on its own snapshot, which sees
    what those writers committed."""
    columns = Columns.of(Order)

    def parse(rows: list[tuple]) -> tuple[list[Order], dict[int, int], list[int]]:
        return [columns.instance(row[2:]) for row in rows if row[2] is not None], dict(rows[0][0]), rows[0][1]

    return Sent(_WORK_LOCK.format(columns=columns.select("orders_order"), contracts=RUN_CONTRACTS),
                {"received": OrderState.RECEIVED, "limit": limit}, parse, times_in_c=True)  # five times a row


def _batches_match(run: _Run, batches: list[_Batch]) -> None:
    """Lock the fund locks of every incoming order's client and the run's ``fund_keys`` in its currencies, and
    read the clients (``_clients_sent``): two statements in one round trip, the read after the locks; then
    match each contract's batch in turn."""
    currencies = {b.contract.collateral_id for b in batches}
    keys = {(o.client_id, b.contract.collateral_id) for b in batches
            for o in b.incoming} | {k for k in run.fund_keys if k[1] in currencies}
    contracts, client_ids = [b.contract for b in batches], sorted({o.client_id for b in batches for o in b.incoming})
    with one_round_trip() if keys and client_ids else contextlib.nullcontext():
        fund_locks = fund_locks_sent(keys=keys) if keys else None
        clients = _clients_sent(contracts, client_ids) if client_ids else None
    run.fund_locks = fund_locks.result() if fund_locks else {}
    _clients_read(run, clients)
    for batch in batches:  # each contract's as a run of it alone would (the run's holds counted)
        _position_tpsl_cancel(batch, batch.stale)  # before a price moves them
        for command in batch.moved:
            _command_apply(batch, command)
        _orders_match(batch)


def _orders_match(batch: _Batch) -> None:
    """Check each incoming order (rules, open-order cap, collateral), hand it to the engine, and collect what
    the engine did."""
    contract, scale, incoming, run = batch.contract, batch.book.scale, batch.incoming, batch.run
    currency = contract.collateral_id
    fund_locks, losses, positions = run.fund_locks, run.losses.get(currency, {}), run.positions.get(contract.pk, {})
    for order in incoming:
        key = (order.client_id, currency)
        if order.state != OrderState.RECEIVED:
            _modify_match(batch, order, fund_locks.get(key))
            continue
        violation = order_violation(order=order, contract=contract, now=batch.run.now)
        if not violation and batch.run.open_counts.get(order.client_id, 0) >= settings.CCP_MAX_OPEN_ORDERS:
            violation = "too_many_open_orders"
        if not violation:
            batch.costs[order.pk] = cost = order_held(contract.terms, order.side, order.price, order.quantity,
                                                      order.attached, leverage=order.leverage,
                                                      reduce_only=order.reduce_only)
            fund_lock = fund_locks.get(key)
            if fund_lock is None or cost > available(fund_lock) - batch.run.held[key] - (
                    losses.get(order.client_id, ZERO) if cost else ZERO):
                violation = "insufficient_collateral"
        price = scale.ticks(order.price)
        if not violation and order.client_id in positions:
            price, violation = _close_bounded(order, price, positions[order.client_id],
                                              available(fund_locks[key]) - batch.run.held[key] - cost, contract, scale)
        if violation:
            _reject(batch, order, violation)
            continue
        if order.trigger:
            limit = order.kind == OrderKind.LIMIT
            command = PlaceTrigger(str(order.pk), order.client_id, order.side, scale.lots(order.quantity),
                                   order.trigger, scale.ticks(order.trigger_price), order.trigger_source,
                                   price if limit else None, None if limit else price, order.reduce_only,
                                   order.self_trade_prevention)
        else:
            attached = order.attached or {}
            command = Submit(str(order.pk), order.client_id, order.side, scale.lots(order.quantity), order.kind,
                             price, order.time_in_force, order.reduce_only, order.self_trade_prevention,
                             _engine_leg(attached.get("tp"), scale), _engine_leg(attached.get("sl"), scale))
        _command_apply(batch, command)


# A run's clients: each one's orders holding collateral (the open-order cap, over all contracts); per collateral
# currency of the run, the cross perpetual losses at the mark not settled yet
# (``ccp.perps.cross.cross_unrealised_losses``: that collateral backs them, not new orders); their positions in
# the run's perpetuals (an order that reduces one trades no further than its collateral). One statement, read
# after the fund locks are taken as its reads always were.
_OPEN_READ = """
    SELECT 'open', client_id, NULL::bigint, count(*)::numeric, NULL::numeric, NULL::numeric FROM orders_order
    WHERE client_id = ANY(%s) AND state = ANY(%s) GROUP BY client_id
"""
_LOSSES_READ = f"""
    UNION ALL
    SELECT 'loss', l.client_id, %s::bigint, l.loss, NULL, NULL FROM ({LOSS_SQL}) AS l(client_id, loss)
"""
_POSITIONS_READ = """
    UNION ALL
    SELECT 'position', client_id, contract_id, quantity, cost, margin FROM risk_position
    WHERE contract_id = ANY(%s) AND client_id = ANY(%s) AND quantity <> 0
"""


def _clients_sent(contracts: list[Contract], client_ids: list[int]) -> Sent:
    """The statement reading these clients' open orders, unrealised cross losses and positions in the run's
    perpetuals, sent (read after the fund locks are taken, as its reads always were)."""
    sql, params = _OPEN_READ, [client_ids, sorted(HOLDING_STATES)]
    for currency_id in sorted({c.collateral_id for c in contracts}):
        sql, params = sql + _LOSSES_READ, [*params, currency_id, client_ids, currency_id, CROSS]
    if perpetuals := sorted(c.pk for c in contracts if c.is_perpetual):
        sql, params = sql + _POSITIONS_READ, [*params, perpetuals, client_ids]
    return Sent(sql, params)


def _clients_read(run: _Run, clients: Sent | None) -> None:
    """The run's clients' open orders, unrealised cross losses and positions in its perpetuals (``_clients_sent``;
    None: no client), into ``run`` (those without any left out)."""
    if clients is None:
        return
    losses: dict[int, list] = defaultdict(list)
    for kind, client_id, other_id, value, cost, margin in clients.result():
        if kind == "open":
            run.open_counts[client_id] = int(value)
        elif kind == "position":
            run.positions.setdefault(other_id, {})[client_id] = (value, cost, margin)
        else:
            losses[other_id].append((client_id, value))
    run.losses = {currency_id: losses_of(found) for currency_id, found in losses.items()}


def _command_apply(batch: _Batch, command) -> None:
    """Hand the engine one command and apply what it did."""
    events = batch.book.engine.apply(command)
    _events_apply(batch, events)
    if batch.contract.is_perpetual:
        _position_tpsl_end(batch, events)


# A perpetual position's take-profit and stop-loss end with it (``ccp.perps.positions``).
POSITION_CLOSED = "position_closed"


def _position_tpsl_end(batch: _Batch, events: list) -> None:
    """Cancel (reason ``position_closed``) the take-profit and stop-loss of every position these events
    closed or turned to the other side: sized and sided for the position they were set on, one left armed
    would close part of the next position its owner opens. Only their trigger orders armed in the engine
    (one that fired is an ordinary order by now)."""
    ended = set()
    for event in events:
        if type(event) is ev.Trade:
            for order_id, after, before in ((event.buy_order_id, event.buy_position, event.buy_position - event.qty),
                                            (event.sell_order_id, event.sell_position,
                                             event.sell_position + event.qty)):
                if before and (after == 0 or (after > 0) != (before > 0)):
                    ended.add(batch.order(order_id).client_id)
    if not ended:
        return
    engine, armed = batch.book.engine, []
    for row in Order.objects.filter(contract_id=batch.contract.pk, client_id__in=ended,
                                    state__in=[OrderState.RECEIVED, OrderState.UNTRIGGERED],  # or armed in this batch
                                    client_order_id__startswith=tpsl_prefix(batch.contract.pk)).order_by("pk"):
        key = engine_id(row)
        order = batch.by_engine_id.get(key) or batch.book.orders.get(key) or row  # the batch's copy first
        if order.state == OrderState.UNTRIGGERED and key in engine.triggers:
            armed.append(order)
    _position_tpsl_cancel(batch, armed)


def _position_tpsl_stale(contract: Contract, book: Book) -> list[Order]:
    """After a rebuild (the positions may have changed outside the matcher: a liquidation's takeover or ADL):
    the position take-profits and stop-losses armed in the engine whose position is flat now or on their own
    side, left by a position that ended."""
    positions, triggers = book.engine.positions, book.engine.triggers
    stale = []
    for order in Order.objects.filter(contract_id=contract.pk, state=OrderState.UNTRIGGERED,
                                      client_order_id__startswith=tpsl_prefix(contract.pk)).order_by("pk"):
        position = positions.get(order.client_id, 0)
        if engine_id(order) in triggers and (position == 0 or (position > 0) == (order.side == "buy")):
            order.contract = contract
            stale.append(order)
    return stale


def _position_tpsl_cancel(batch: _Batch, orders: list[Order]) -> None:
    """Cancel these position take-profits and stop-losses armed in the engine (reason ``position_closed``)."""
    engine = batch.book.engine
    for order in orders:
        key = engine_id(order)
        order.contract = batch.contract
        batch.by_engine_id[key] = order
        _events_apply(batch, [ev.Cancelled(event.order_id, POSITION_CLOSED, event.remaining)
                              if type(event) is ev.Cancelled else event
                              for event in engine.apply(Cancel(key, order.client_id))])


def _close_bounded(order: Order, price: int, position: tuple[Decimal, Decimal, Decimal], free: Decimal,
                   contract: Contract, scale) -> tuple[int, str]:
    """(the engine's price in ticks, a refusal or "") of a perpetual order against its client's position
    (quantity, cost, margin): an order that reduces it may not trade beyond the price at which the part it
    closes would take the client's available collateral (``free``, after the batch's other holds and this
    order's own) below zero (``ccp.perps.margin.close_bound``). A market, immediate or conditional market
    order is protected at that price; a limit order that could rest beyond it is refused
    (``insufficient_collateral``)."""
    quantity, cost, margin = position
    if (quantity > 0) == (order.side == "buy"):
        return price, ""  # it adds to the position
    closing = min(order.quantity, abs(quantity))
    bound = close_bound(quantity=quantity, cost=cost, margin=margin, free=free, closing=closing)
    tick = contract.tick_size
    bound = to_tick(bound, tick, ROUND_CEILING if quantity > 0 else ROUND_FLOOR)
    if bound <= 0:
        return price, ""  # no positive price takes it below zero
    bound_ticks = scale.ticks(bound)
    beyond = price < bound_ticks if quantity > 0 else price > bound_ticks
    if not beyond:
        return price, ""
    if order.kind == OrderKind.LIMIT and order.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK):
        return price, "insufficient_collateral"
    return bound_ticks, ""


def _events_apply(batch: _Batch, events: list) -> None:
    """What the engine did, onto the orders: acceptances, rejections, trades, rests, cancels, arming and
    firing of stop and take-profit orders."""
    scale = batch.book.scale
    batch.orders_read(events)
    for event in events:
        kind = type(event)
        if kind is ev.Trade:
            buy, sell = batch.order(event.buy_order_id), batch.order(event.sell_order_id)
            batch.executions.append(Execution(batch.contract.pk, scale.price(event.price), scale.qty(event.qty),
                                              buy.pk, buy.client_id, sell.pk, sell.client_id, event.aggressor))
        elif kind is ev.Rested:
            order = batch.order(event.order_id)
            batch.book.priority += 1  # the engine numbers its rests 1, 2, 3, ... from the rebuild's highest
            order.book_priority = batch.book.priority
            batch.levels.add((order.side, order.price))
            batch.run.touched[order.pk] = order
        elif kind is ev.Cancelled:
            order = batch.order(event.order_id)
            if order.state == OrderState.UNTRIGGERED:  # an armed stop or leg: cancelled here, not on the book
                batch.hold_set(order, ZERO)
                batch.state_set(order, OrderState.CANCELLED, event.reason)
            else:
                batch.cancels[order.pk] = event.reason
        elif kind is ev.Accepted:
            _accepted(batch, batch.order(event.order_id), scale.qty(event.qty))
        elif kind is ev.Rejected:
            order = batch.order(event.order_id)
            if order.state == OrderState.RECEIVED:
                _reject(batch, order, event.reason)
            elif order.state == OrderState.UNTRIGGERED:  # fired, then refused as it entered the book
                batch.hold_set(order, ZERO)
                batch.state_set(order, OrderState.REJECTED, event.reason)
                order.reject_reason = event.reason
        elif kind is ev.Armed:
            _armed(batch, event)
        elif kind is ev.Triggered:
            order = batch.order(event.trigger_id)
            order.triggered_at = batch.run.now
            batch.run.touched[order.pk] = order


def _accepted(batch: _Batch, order: Order, quantity: Decimal) -> None:
    """An order the engine took: a new order (or a stop or take-profit order, armed next), or a fired one
    entering the book. A reduce-only order may have been cut to the position."""
    reason = "triggered" if order.state == OrderState.UNTRIGGERED else ""
    value = batch.costs.get(order.pk, order.order_value)
    if quantity != order.quantity:  # a reduce-only order cut to the position
        order.quantity_requested, order.quantity, reason = order.quantity, quantity, "reduce_only_cut"
        value = order_held(batch.contract.terms, order.side, order.price, quantity - order.filled_quantity,
                           order.attached, leverage=order.leverage, reduce_only=order.reduce_only)
    batch.hold_set(order, value)
    if order.state == OrderState.RECEIVED:
        batch.run.open_counts[order.client_id] = batch.run.open_counts.get(order.client_id, 0) + 1
    batch.state_set(order, OrderState.UNTRIGGERED if order.state == OrderState.RECEIVED and order.trigger
                    else OrderState.ACCEPTED, reason)


def _armed(batch: _Batch, event) -> None:
    """A stop or take-profit armed (``trigger_priority``: the engine's arming sequence), or an entry's leg
    armed or grown with the entry's fills: the leg's order holds its worst case, moved from the entry's."""
    trigger = batch.book.engine.triggers.get(event.trigger_id)
    entry_id, _, leg_name = event.trigger_id.partition(":")
    if not leg_name:
        order = batch.order(event.trigger_id)
    else:
        entry = batch.order(entry_id)
        order = batch.by_engine_id.get(event.trigger_id)  # None: armed for the first time
        spec = entry.attached[leg_name]
        quantity = batch.book.scale.qty(event.qty)
        if order is None:
            kind = spec["kind"]
            order = Order(
                pk=batch.order_id_take(), client_id=entry.client_id, contract=batch.contract,
                client_order_id=f"{entry.pk}/{leg_name}",
                side=event.side, kind=kind, price=Decimal(spec["price"]), quantity=quantity,
                time_in_force=TimeInForce.GTC if kind == OrderKind.LIMIT else TimeInForce.IOC, reduce_only=True,
                self_trade_prevention=entry.self_trade_prevention,
                trigger=Trigger.TAKE_PROFIT if leg_name == "tp" else Trigger.STOP,
                trigger_price=Decimal(spec["trigger_price"]), trigger_source=spec["trigger_source"],
                parent=entry, leg=leg_name, state=OrderState.UNTRIGGERED, created_at=batch.run.now,
                updated_at=batch.run.now,
                leverage=entry.leverage, margin_mode=entry.margin_mode)
            batch.run.created.append(order)
            batch.run.histories.append({"order_id": order.pk, "from_state": None, "to_state": OrderState.UNTRIGGERED,
                                        "reason": "armed", "filled_quantity": ZERO, "at": batch.run.now})
        order.contract = batch.contract
        batch.by_engine_id[event.trigger_id] = order
        order.quantity = quantity
        value = order_value(batch.contract.terms, order.side, order.price, quantity, leverage=order.leverage,
                            reduce_only=True)
        entry.order_value -= value - order.order_value  # the entry held it for this quantity (order_held)
        order.order_value = value
    if trigger is not None:
        order.trigger_priority = trigger.seq
    batch.run.touched[order.pk] = order


def _modify_match(batch: _Batch, order: Order, fund_lock) -> None:
    """A modification that loses time priority (a new price or a larger size): the new worst case checked
    against available collateral, then the engine re-enters the order."""
    target_price, target_quantity = order.modify_price, order.modify_quantity
    order.modify_price = order.modify_quantity = order.modify_requested_at = None
    order.modify_reject_reason = ""
    batch.run.touched[order.pk] = order
    if order.state not in BOOK_STATES:
        return  # filled or cancelled since it was asked: nothing left to modify
    contract, scale = batch.contract, batch.book.scale
    remaining = target_quantity - order.filled_quantity
    value = order_held(contract.terms, order.side, target_price, remaining, order.attached, leverage=order.leverage,
                       reduce_only=order.reduce_only) if remaining > 0 else ZERO
    key = (order.client_id, contract.collateral_id)
    if value > order.order_value and (fund_lock is None
                                      or value - order.order_value > available(fund_lock) - batch.run.held[key]):
        order.modify_reject_reason = "insufficient_collateral"
        return
    events = batch.book.engine.apply(Modify(engine_id(order), order.client_id, scale.ticks(target_price),
                                            scale.lots(target_quantity)))
    batch.orders_read(events)
    for event in events:
        if type(event) is ev.Rejected and event.order_id == engine_id(order):
            order.modify_reject_reason = event.reason
        elif type(event) is ev.Modified:
            batch.levels.add((order.side, order.price))
            batch.hold_set(order, value)
            order.price = target_price
            if remaining > 0:  # else the engine cancels the rest (modified_below_filled): its size stays
                order.quantity = target_quantity
        else:
            _events_apply(batch, [event])
    if contract.is_perpetual:
        _position_tpsl_end(batch, events)


_MODIFY_FIELDS = ("modify_price", "modify_quantity", "modify_requested_at", "modify_reject_reason")
_TOUCHED_FIELDS = ("state", "reject_reason", "price", "quantity", "quantity_requested", "order_value",
                   "book_priority", "trigger_priority", "triggered_at", *_MODIFY_FIELDS, "updated_at")


def _reject(batch: _Batch, order: Order, reason: str) -> None:
    batch.state_set(order, OrderState.REJECTED, reason)
    order.reject_reason = reason


def _run_write(run: _Run, batches: list[_Batch]) -> tuple[dict[int, dict], dict[int, int]]:
    """Write the orders the run changed and the collateral they hold, book the trades and cancels of all its
    contracts through the clearing core in one call (the order value the run took or gave back in the same
    fund lock update), then publish, in one numbering each: the private messages (the clearing core's, one
    ``book`` message per client and contract, then the orders and balances it did not send: a filled or
    cancelled order's final state is in its messages) and the levels orders joined or left. Private
    messages are numbered last, with the levels and the batches' book versions (``books_numbered``: one
    statement, which locks the clients' rows, ``ccp.locks`` 8). Returns the representation
    (``order_payload``) of each order it changed, by id, and the batches' new book versions."""
    now = run.now
    bulk_insert_rows(Order, run.created, with_pk=True)
    for order in run.created:
        order._state.adding, order._state.db = False, "default"  # as if saved: they are now rows
    touched = [run.touched[pk] for pk in sorted(run.touched)]
    for order in touched:
        order.updated_at = now
    held = {key: value for key, value in run.held.items() if value}
    messages, levels, cleared_orders = [], {b.contract.pk: set(b.levels) for b in batches}, set()
    # Not entered: the last writes it holds (the orders', their history's, the fund locks') go out with the
    # numbering below, in one statement (``held_take``).
    behind = Behind(threaded=False)
    executions = [e for b in batches for e in b.executions]  # each contract's in its engine's order
    cancels = {pk: reason for b in batches for pk, reason in b.cancels.items()}
    payloads: dict[int, dict] = {}  # the representations of the orders the booking leaves as they are

    def meanwhile(built: Mapping[int, dict]) -> None:
        # While PostgreSQL books the trades (the orders are final): their representations and the incoming
        # orders' results as the waiting requests get them.
        payloads.update((order.pk, order_payload(order)) for order in touched if order.pk not in built)
        for batch in batches:
            for order in batch.incoming:
                if (payload := built.get(order.pk) or payloads.get(order.pk)) is not None:
                    run.texts[order.pk] = result_json(payload)

    if executions or cancels:
        orders = {o.pk: o for b in batches for o in b.by_engine_id.values()}
        first = batches[0]
        # The run's own name: its first contract's book version it commits (each run bumps the version of each
        # of its contracts; a retried run has the same, and no other run commits that version).
        cleared = trades_clear(venue=Venue.BOOK, venue_ref=f"book-{first.contract.pk}-{first.book.version + 1}",
                               executions=executions, orders=orders,
                               contracts={b.contract.pk: b.contract for b in batches}, cancels=cancels, now=now,
                               envelope={"type": "book"}, order_value=held, locked=run.fund_locks, publish=False,
                               touched=touched, touched_fields=_TOUCHED_FIELDS, histories=run.histories,
                               nowait=run.nowait, held=behind, meanwhile=meanwhile)
        cleared_orders = set(cleared.filled) | {pk for pk, o in orders.items()
                                                 if pk in cancels and o.state == OrderState.CANCELLED}
        messages, fund_locks = _by_contract(cleared.messages, [b.contract.symbol for b in batches]), cleared.others
        for contract_id, changed in cleared.levels.items():
            levels.setdefault(contract_id, set()).update(changed)
    else:
        if len(touched) <= FEW_ROWS and len(run.histories) <= FEW_ROWS:
            if touched:
                behind.write(bulk_update_write(Order, touched, _TOUCHED_FIELDS))
            if run.histories:
                behind.write(bulk_insert_write(OrderStateHistory, run.histories))
        else:
            bulk_update_rows(Order, touched, list(_TOUCHED_FIELDS))
            bulk_insert_rows(OrderStateHistory, run.histories)
        fund_locks = fund_locks_adjust(settle_value={}, order_value=held, lockup_value={}, now=now,
                                       locked=run.fund_locks, behind=behind) if held else {}
    messages += [(order.client_id, {"type": "order", "order": payloads.get(order.pk) or order_payload(order)})
                 for order in touched if order.pk not in cleared_orders]
    private = [*messages, *balance_events(fund_locks.values())]
    # The levels' totals and the best bid and offer from the engines, which now hold what the database does:
    # the numbering reads no order (reading them scanned every resting order of the contracts).
    books = {b.contract.pk: _book_levels(b.book, levels.get(b.contract.pk, ())) for b in batches}
    known = all(c in books for c, lv in levels.items() if lv)
    # One statement numbers it all (the books' versions, their level changes, the private messages), with the
    # writes held.
    # The writes held before the last ones (the positions' and lockups' upserts, each a statement) go in its round
    # trip.
    with one_round_trip() if behind.held_apart() else contextlib.nullcontext():
        sent = books_numbered(
            contract_ids=[b.contract.pk for b in batches],
            levels={c: len(set(lv)) for c, lv in levels.items() if lv} if known else {},
            messages=Counter(client_id for client_id, _ in private), writes=behind.held_take())
    versions, numbered, last = ({}, {}, {}) if sent is None else sent.result()
    if private:
        client_stream_publish_taken(private, last)
    books_levels_changed(levels=levels, books=books if known else None, numbered=numbered if known else None)
    # Every order the run changed has its final message here (those it booked in the clearing core's
    # envelope): the waiting requests get the same representation, built once (nothing changes them after).
    return {event["order"]["id"]: event["order"] for _, message in messages
            for event in message.get("events", (message,)) if event.get("type") == "order"}, versions


def _book_levels(book: Book, levels) -> tuple[dict, dict]:
    """(each of ``levels``' (side, price) totals (quantity, orders), the best bid and offer with their
    quantities) as ``books_levels_changed`` takes them, from the engine."""
    engine, scale = book.engine, book.scale
    totals = {}
    for side, price in levels:
        lots, count = engine.level(side, scale.ticks(price))
        totals[(side, price)] = (scale.qty(lots), count)
    bbo: dict[str, Decimal | None] = {"bid": None, "bid_quantity": None, "ask": None, "ask_quantity": None}
    for side, name in (("buy", "bid"), ("sell", "ask")):
        if (best := engine.best(side)) is not None:
            bbo[name], bbo[f"{name}_quantity"] = scale.price(best), scale.qty(engine.level(side, best)[0])
    return totals, bbo


def _event_contract(event: dict) -> str | None:
    """The symbol of the contract a private event concerns (None: a balance, of a currency)."""
    kind = event["type"]
    return event["contract"] if kind == "fill" else event[kind]["contract"] if kind in ("order", "position") else None


def _by_contract(messages: list[tuple[int, dict]], symbols: list[str]) -> list[tuple[int, dict]]:
    """The clearing core's messages of a run (one per client, every contract's events) as one ``book``
    message per client and contract (``contract``, ``events``), as a run of each contract alone would send
    them: each contract's events in their order, in the run's contract order; a client's balances, which
    the contracts share, in its last message."""
    out = []
    for client_id, message in messages:
        groups: dict[str, list[dict]] = {}
        shared = []
        for event in message["events"]:
            symbol = _event_contract(event)
            if symbol is None:
                shared.append(event)
            else:
                groups.setdefault(symbol, []).append(event)
        ordered = [symbol for symbol in symbols if symbol in groups] or symbols[:1]
        for n, symbol in enumerate(ordered):
            events = groups.get(symbol, []) + (shared if n == len(ordered) - 1 else [])
            out.append((client_id, {"type": message["type"], "contract": symbol, "events": events}))
    return out


@transaction.atomic
def order_modify(*, client, order_id: int, price: Decimal | None, quantity: Decimal | None,
                 now: datetime) -> tuple[Order, bool]:
    """Modify one of the client's resting orders on a continuous contract; returns (order, queued).

    A smaller size at the same price keeps the order's time priority and is done here (at or below what
    has filled, the rest is cancelled ``modified_below_filled``). A new price or a larger size loses it:
    the order re-enters the book through the contract's matcher, in arrival order with new orders (it may
    trade at once; a post-only order that would take is refused and left unchanged), so it is queued and
    ``queued`` is true; the matcher's refusal, if any, is ``modify_reject_reason``. Locks as
    ``order_cancel``: book (shared), contract, order, fund lock."""
    now = require_aware(now)
    row = Order.objects.filter(pk=order_id, client=client).values_list("contract_id", "contract__pair_id").first()
    if row is None:
        raise NotFound("No such order.", code="order_not_found")
    book_lock(row[1], exclusive=False)
    contract = contract_lock(row[0])
    order = order_lock(order_id)
    order.contract = contract
    if contract.trading_mode != TradingMode.CONTINUOUS:
        raise Conflict("Orders of a contract trading in auctions cannot be modified: cancel and send a new one.",
                       code="modify_not_in_auction")
    if order.state not in BOOK_STATES:
        raise Conflict(f"The order is {order.state}: only an order on the book can be modified.",
                       code="order_not_open")
    queued = order.modify_requested_at is not None  # then this one follows it through the matcher
    price = (order.modify_price if queued else order.price) if price is None else price
    quantity = (order.modify_quantity if queued else order.quantity) if quantity is None else quantity
    violation = order_violation(order=_Terms(order, price, quantity), contract=contract, now=now)
    if violation:
        raise ApplicationError(REASONS[violation], code=violation)
    if queued or price != order.price or quantity > order.quantity:
        order.modify_price, order.modify_quantity, order.modify_requested_at = price, quantity, now
        order.modify_reject_reason, order.updated_at = "", now
        order.save(update_fields=[*_MODIFY_FIELDS, "updated_at"])
        orders_validate_later([order])
        return order, True
    if quantity == order.quantity:
        return order, False
    if quantity <= order.filled_quantity:
        return order_cancel(client=client, order_id=order_id, now=now, reason="modified_below_filled"), False
    value = order_held(contract.terms, order.side, price, quantity - order.filled_quantity, order.attached,
                       leverage=order.leverage, reduce_only=order.reduce_only)
    released = {(order.client_id, contract.collateral_id): value - order.order_value}
    books_touched([contract.pk])
    order.quantity, order.order_value, order.modify_reject_reason, order.updated_at = quantity, value, "", now
    order.save(update_fields=["quantity", "order_value", "modify_reject_reason", "updated_at"])
    balances_publish(fund_locks_adjust(settle_value={}, order_value=released, lockup_value={}, now=now).values())
    client_stream_publish(order.client_id, {"type": "order", "order": order_payload(order)})
    books_levels_changed(levels={contract.pk: [(order.side, order.price)]})
    return order, False


@dataclass(frozen=True)
class _Terms:
    """An order's terms with a new price and size, as the order rules read them."""

    order: Order
    price: Decimal
    quantity: Decimal

    def __getattr__(self, name):
        return getattr(self.order, name)


# The matcher's refusals of a modification (``Order.modify_reject_reason``), as the API explains them.
MODIFY_REFUSED = "The book refused the modification: the order is unchanged."
MODIFY_REASONS = {
    "post_only_would_take": "A post-only order at the new price would take liquidity: the order is unchanged.",
    "insufficient_collateral": "Available collateral does not cover the modified order's worst case: the order "
                               "is unchanged.",
    "modify_not_in_auction": "The contract now trades in auctions: the order is unchanged.",
}


def position_close(*, client, contract: Contract, price: Decimal, client_order_id: str,
                   now: datetime) -> tuple[Order, bool]:
    """Enter a reduce-only market order (immediate or cancel) for the client's whole position in the
    contract, protected at ``price``: ``order_submit``'s answer. The matcher cuts it to the position as it
    is when the order is matched. Idempotent on client_order_id as order entry."""
    existing = Order.objects.filter(client=client, client_order_id=client_order_id).select_related("contract").first()
    position, mode = Position.objects.filter(client=client, contract=contract).values_list(
        "quantity", "margin_mode").first() or (ZERO, "")
    if existing is None and not position:
        raise Conflict("You have no position in this contract.", code="no_position")
    if existing is not None:  # the same close again: the order it entered (order_submit checks it is the same)
        side, quantity = existing.side, existing.quantity_requested or existing.quantity
        margin = {"leverage": existing.leverage, "margin_mode": existing.margin_mode}
    else:
        side, quantity = ("sell" if position > 0 else "buy"), abs(position)
        # A perpetual's close only reduces: its leverage moves nothing (1), its mode is the position's.
        margin = {"leverage": Decimal(1), "margin_mode": mode or "cross"} if contract.is_perpetual else {}
    return order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=client_order_id, contract=contract, side=side, kind=OrderKind.MARKET, price=price,
        quantity=quantity, time_in_force=TimeInForce.IOC, reduce_only=True, **margin))
