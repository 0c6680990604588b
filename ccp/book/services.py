"""The continuous venue: a contract in ``continuous`` trading mode is matched by its matcher, one batch of
received orders at a time, through the pure engine (``ccp.book.engine``) and booked through the clearing
core (``ccp.clearing.booking.trades_clear``).

One writer per contract, enforced by the database: a batch holds the contract's row lock
(``ccp.locks`` 3) from the moment it reads the received orders until it commits, and every service that
changes a contract's orders holds that lock too (order entry's cancel, a halt, a trading-mode change).
Two matchers pointed at one contract therefore run one after the other, never both at once.

Durable before visible: a batch's acceptances, rejections, trades, order states, positions, lockups and
fund locks commit in one transaction; its stream events, the public trades and the answers to the
waiting requests go out after that commit. A batch that fails (or a process killed mid-batch) leaves
nothing: its orders are still 'received' and the next batch takes them again, in the same order.

The engine in memory is a cache of the database: each process keeps one per contract with the book
sequence (``Contract.book_sequence``) it matches. Every change of a resting order changes a level and so
bumps that sequence in the same transaction; a batch that finds the sequence moved (a cancel, a halt,
another process's batch, a restart) rebuilds the engine from the database first: the resting orders in
time priority (``Order.book_priority``), the positions, the last trade price.

Arrival order is the order ids' order; a batch takes at most ``CCP_BOOK_BATCH`` orders. Each incoming order
is checked (the order rules, the open-order cap, then available collateral less what earlier orders of
the batch took: the clearing core's one rule) before the engine sees it, and holds its worst case
(``order_value``: a market order's at its protection price) while it rests.
"""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.book import engine as ev
from ccp.book.engine import Engine, Modify, Scale, Submit
from ccp.clearing.booking import order_state_set, trades_clear
from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution
from ccp.clock import require_aware
from ccp.contracts.models import Contract, TradingMode
from ccp.db import bulk_insert_rows, bulk_update_rows
from ccp.errors import ApplicationError, Conflict, NotFound
from ccp.locks import book_lock, contract_lock, fund_locks_lock, order_lock, orders_lock
from ccp.money import ZERO
from ccp.orders.models import Order, OrderKind, OrderStateHistory, TimeInForce
from ccp.orders.results import order_results_signal
from ccp.orders.rules import REASONS, order_value
from ccp.orders.serializers import order_payload
from ccp.orders.services import (
    OrderRequest,
    books_levels_changed,
    order_cancel,
    order_submit,
    order_violation,
    orders_validate_later,
)
from ccp.orders.states import BOOK_STATES, OrderState
from ccp.risk.collateral import available
from ccp.risk.models import Position
from ccp.streams import client_group, stream_publish


@dataclass
class Book:
    """A contract's engine and what ties it to the database."""

    engine: Engine
    scale: Scale
    sequence: int  # the contract's book_sequence the engine matches
    priority: int  # the engine's last resting sequence (the next order that rests gets priority + 1)


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


def book_rebuild(contract: Contract) -> Book:
    """The contract's engine as the database has it: resting orders in time priority, positions in
    lots, the last trade's price. The caller holds the contract's row lock."""
    scale = Scale(contract.tick_size, contract.lot_size)
    orders, priority = [], 0
    for row in (Order.objects.filter(contract=contract, state__in=BOOK_STATES)
                .order_by("book_priority", "id")
                .values("id", "client_id", "side", "kind", "price", "quantity", "filled_quantity", "time_in_force",
                        "reduce_only", "self_trade_prevention", "book_priority")):
        priority = max(priority, row["book_priority"] or 0)
        quantity = scale.lots(row["quantity"])
        filled = scale.lots(row["filled_quantity"])
        orders.append({"order_id": str(row["id"]), "user": row["client_id"], "side": row["side"],
                       "kind": row["kind"], "price": scale.ticks(row["price"]), "qty": quantity,
                       "remaining": quantity - filled, "filled": filled, "tif": row["time_in_force"],
                       "reduce_only": row["reduce_only"], "stp": row["self_trade_prevention"],
                       "seq": row["book_priority"] or 0, "tp": None, "sl": None, "tp_state": None,
                       "sl_state": None, "legs_done": False})
    positions = {client_id: scale.lots(quantity) for client_id, quantity in
                 Position.objects.filter(contract=contract).exclude(quantity=0).values_list("client_id", "quantity")}
    last = Trade.objects.filter(contract=contract).order_by("-sequence").values_list("price", flat=True).first()
    engine = Engine.from_snapshot({
        "orders": orders, "triggers": [], "positions": positions,
        "prices": {"last": None if last is None else scale.ticks(last), "mark": None, "index": None},
        "counters": {"order_seq": priority, "trigger_seq": 0, "trade_seq": 0}})
    return Book(engine, scale, contract.book_sequence, priority)


@dataclass
class _Batch:
    """What one batch decided, before it is written."""

    contract: Contract
    now: datetime
    incoming: list[Order]  # in arrival order
    orders: dict[int, Order]  # incoming orders and the resting ones they met
    histories: list[dict]
    held: dict[tuple[int, int], Decimal]  # order value taken per (client, currency)
    executions: list[Execution]
    cancels: dict[int, str]
    levels: set[tuple[str, Decimal]]  # levels the batch changed outside trades_clear (rests, modifies)
    modified: list[Order]  # orders whose modification the batch handled
    events: list[tuple[int, dict]]  # (client, order event) of acceptances and rejections


@transaction.atomic
def book_match(*, contract_id: int, now: datetime, limit: int | None = None) -> int:
    """Match the next batch of the contract's received orders (at most ``limit``, default
    ``CCP_BOOK_BATCH``) in arrival order and book the result; returns how many orders it took (the caller
    runs it again while that is the limit). Safe to run twice and concurrently (see the module
    docstring). A contract no longer continuous hands its received orders to the auctions' validation."""
    now = require_aware(now)
    limit = limit or settings.CCP_BOOK_BATCH
    pair_id = Contract.objects.filter(pk=contract_id).values_list("pair_id", flat=True).first()
    if pair_id is None:
        return 0
    book_lock(pair_id, exclusive=False)
    contract = contract_lock(contract_id)
    # Arrival order: new orders by their time of entry, modifications by theirs (then by id).
    work = sorted([*Order.objects.filter(contract=contract, state=OrderState.RECEIVED)
                   .order_by("created_at", "id").values_list("created_at", "id")[:limit],
                   *Order.objects.filter(contract=contract, modify_requested_at__isnull=False)
                   .order_by("modify_requested_at", "id").values_list("modify_requested_at", "id")[:limit]])[:limit]
    if not work:
        return 0
    ids = [pk for _, pk in work]
    locked = {o.pk: o for o in orders_lock(Order.objects.filter(pk__in=ids))}
    incoming = [locked[pk] for pk in ids]
    for order in incoming:
        order.contract = contract
    if contract.trading_mode != TradingMode.CONTINUOUS:
        orders_validate_later([o for o in incoming if o.state == OrderState.RECEIVED])
        _modifies_refuse([o for o in incoming if o.modify_requested_at], "modify_not_in_auction", now)
        return 0
    book = _BOOKS.pop(contract_id, None)  # back only when this batch commits
    if book is None or book.sequence != contract.book_sequence:
        book = book_rebuild(contract)
    batch = _Batch(contract, now, incoming, {o.pk: o for o in incoming}, [], defaultdict(Decimal), [], {}, set(), [],
                   [])
    _orders_match(batch, book)
    failpoint("matched")
    _batch_write(batch, book)
    book.sequence = Contract.objects.filter(pk=contract_id).values_list("book_sequence", flat=True).get()
    transaction.on_commit(lambda: _BOOKS.__setitem__(contract_id, book))
    order_results_signal(ids)
    transaction.on_commit(lambda: failpoint("committed"))
    failpoint("written")
    return len(ids)


def _orders_match(batch: _Batch, book: Book) -> None:
    """Check each incoming order, hand it to the engine, and collect what the engine did."""
    contract, scale, incoming = batch.contract, book.scale, batch.incoming
    currency = contract.collateral_id
    fund_locks = fund_locks_lock(keys={(o.client_id, currency) for o in incoming})
    open_counts = dict(Order.objects.filter(client_id__in={o.client_id for o in incoming}, state__in=BOOK_STATES)
                       .values_list("client_id").annotate(n=Count("id")).values_list("client_id", "n"))
    costs: dict[int, Decimal] = {}
    makers: set[int] = set()
    for order in incoming:
        key = (order.client_id, currency)
        if order.state != OrderState.RECEIVED:
            makers.update(_modify_match(batch, book, order, fund_locks.get(key)))
            continue
        violation = order_violation(order=order, contract=contract, now=batch.now)
        if not violation and open_counts.get(order.client_id, 0) >= settings.CCP_MAX_OPEN_ORDERS:
            violation = "too_many_open_orders"
        if not violation:
            costs[order.pk] = cost = order_value(contract.terms, order.side, order.price, order.quantity)
            fund_lock = fund_locks.get(key)
            if fund_lock is None or cost > available(fund_lock) - batch.held[key]:
                violation = "insufficient_collateral"
        if violation:
            _reject(batch, order, violation)
            continue
        events = book.engine.apply(Submit(
            str(order.pk), order.client_id, order.side, scale.lots(order.quantity), order.kind,
            scale.ticks(order.price), order.time_in_force, order.reduce_only, order.self_trade_prevention))
        for event in events:
            kind = type(event)
            if _common_event(batch, book, event, makers):
                continue
            if kind is ev.Accepted:
                reason = ""
                if (quantity := scale.qty(event.qty)) != order.quantity:  # a reduce-only order cut to the position
                    order.quantity_requested, order.quantity, reason = order.quantity, quantity, "reduce_only_cut"
                    costs[order.pk] = order_value(contract.terms, order.side, order.price, quantity)
                batch.held[key] += costs[order.pk]
                open_counts[order.client_id] = open_counts.get(order.client_id, 0) + 1
                order.order_value = costs[order.pk]
                order_state_set(order, OrderState.ACCEPTED, now=batch.now, reason=reason, histories=batch.histories)
                batch.events.append((order.client_id, {"type": "order", "order": order_payload(order)}))
            elif kind is ev.Rejected:
                _reject(batch, order, event.reason)
    if makers:
        # Resting orders are read, not locked: every writer of a contract's orders holds its row (ccp.locks).
        for order in Order.objects.filter(pk__in=makers - set(batch.orders)):
            order.contract = contract
            batch.orders[order.pk] = order


def _common_event(batch: _Batch, book: Book, event, makers: set[int]) -> bool:
    """Collect a trade, a rest or a cancel (of any order the command touched); False for other events."""
    kind, scale = type(event), book.scale
    if kind is ev.Trade:
        buy, sell = int(event.buy_order_id), int(event.sell_order_id)
        makers.update(pk for pk in (buy, sell) if pk not in batch.orders)
        batch.executions.append(Execution(batch.contract.pk, scale.price(event.price), scale.qty(event.qty), buy,
                                          event.buy_user, sell, event.sell_user, event.aggressor))
    elif kind is ev.Rested:
        order = batch.orders[int(event.order_id)]
        book.priority += 1
        order.book_priority = book.priority
        batch.levels.add((order.side, order.price))
    elif kind is ev.Cancelled:
        pk = int(event.order_id)
        batch.cancels[pk] = event.reason
        if pk not in batch.orders:
            makers.add(pk)
    else:
        return False
    return True


def _modify_match(batch: _Batch, book: Book, order: Order, fund_lock) -> set[int]:
    """A modification that loses time priority (a new price or a larger size): the new worst case checked
    against available collateral, then the engine re-enters the order. Returns the resting orders it met."""
    target_price, target_quantity = order.modify_price, order.modify_quantity
    order.modify_price = order.modify_quantity = order.modify_requested_at = None
    order.modify_reject_reason = ""
    batch.modified.append(order)
    if order.state not in BOOK_STATES:
        return set()  # filled or cancelled since it was asked: nothing left to modify
    contract, scale = batch.contract, book.scale
    remaining = target_quantity - order.filled_quantity
    value = order_value(contract.terms, order.side, target_price, remaining) if remaining > 0 else ZERO
    key = (order.client_id, contract.collateral_id)
    if value > order.order_value and (fund_lock is None
                                      or value - order.order_value > available(fund_lock) - batch.held[key]):
        order.modify_reject_reason = "insufficient_collateral"
        return set()
    makers: set[int] = set()
    old_level = (order.side, order.price)
    for event in book.engine.apply(Modify(str(order.pk), order.client_id, scale.ticks(target_price),
                                          scale.lots(target_quantity))):
        if _common_event(batch, book, event, makers):
            continue
        if type(event) is ev.Rejected:
            order.modify_reject_reason = event.reason
        elif type(event) is ev.Modified:
            batch.levels.add(old_level)
            batch.held[key] += value - order.order_value
            order.price, order.order_value = target_price, value
            if remaining > 0:  # else the engine cancels the rest (modified_below_filled): its size stays
                order.quantity = target_quantity
    return makers


def _modifies_refuse(orders: list[Order], reason: str, now: datetime) -> None:
    for order in orders:
        order.modify_price = order.modify_quantity = order.modify_requested_at = None
        order.modify_reject_reason, order.updated_at = reason, now
    bulk_update_rows(Order, orders, [*_MODIFY_FIELDS, "updated_at"])
    for order in orders:
        stream_publish(client_group(order.client_id), {"type": "order", "order": order_payload(order)})


_MODIFY_FIELDS = ("modify_price", "modify_quantity", "modify_requested_at", "modify_reject_reason")


def _reject(batch: _Batch, order: Order, reason: str) -> None:
    order_state_set(order, OrderState.REJECTED, now=batch.now, reason=reason, histories=batch.histories)
    order.reject_reason = reason
    batch.events.append((order.client_id, {"type": "order", "order": order_payload(order)}))


def _batch_write(batch: _Batch, book: Book) -> None:
    """Write the incoming orders' acceptance or rejection and the collateral they hold, then book the
    trades and cancels through the clearing core, then publish the levels the resting orders joined."""
    contract, now, incoming = batch.contract, batch.now, batch.incoming
    for order in incoming:
        order.updated_at = now
    bulk_update_rows(Order, incoming, ["state", "reject_reason", "price", "quantity", "quantity_requested",
                                       "order_value", "book_priority", *_MODIFY_FIELDS, "updated_at"])
    bulk_insert_rows(OrderStateHistory, batch.histories)
    if batch.held:
        balances_publish(fund_locks_adjust(settle_value={}, order_value=dict(batch.held), lockup_value={},
                                           now=now).values())
    for client_id, event in batch.events:
        stream_publish(client_group(client_id), event)
    for order in batch.modified:
        if order.pk not in batch.cancels and not any(e.buy_order_id == order.pk or e.sell_order_id == order.pk
                                                     for e in batch.executions):
            stream_publish(client_group(order.client_id), {"type": "order", "order": order_payload(order)})
    if batch.executions or batch.cancels:
        trades_clear(venue=Venue.BOOK, venue_ref=f"book-{contract.pk}-{min(o.pk for o in incoming)}",
                     executions=batch.executions, orders=batch.orders, contracts={contract.pk: contract},
                     cancels=batch.cancels, now=now, envelope={"type": "book", "contract": contract.symbol})
    if batch.levels:
        books_levels_changed(levels={contract.pk: batch.levels})


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
    value = order_value(contract.terms, order.side, price, quantity - order.filled_quantity)
    released = {(order.client_id, contract.collateral_id): value - order.order_value}
    order.quantity, order.order_value, order.modify_reject_reason, order.updated_at = quantity, value, "", now
    order.save(update_fields=["quantity", "order_value", "modify_reject_reason", "updated_at"])
    balances_publish(fund_locks_adjust(settle_value={}, order_value=released, lockup_value={}, now=now).values())
    stream_publish(client_group(order.client_id), {"type": "order", "order": order_payload(order)})
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
    position = Position.objects.filter(client=client, contract=contract).values_list("quantity", flat=True).first()
    if existing is None and not position:
        raise Conflict("You have no position in this contract.", code="no_position")
    if existing is not None:  # the same close again: the order it entered (order_submit checks it is the same)
        side, quantity = existing.side, existing.quantity_requested or existing.quantity
    else:
        side, quantity = ("sell" if position > 0 else "buy"), abs(position)
    return order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=client_order_id, contract=contract, side=side, kind=OrderKind.MARKET, price=price,
        quantity=quantity, time_in_force=TimeInForce.IOC, reduce_only=True))
