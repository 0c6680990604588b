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
from ccp.book.engine import Engine, Scale, Submit
from ccp.clearing.booking import order_state_set, trades_clear
from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution
from ccp.clock import require_aware
from ccp.contracts.models import Contract, TradingMode
from ccp.db import bulk_insert_rows, bulk_update_rows
from ccp.locks import book_lock, contract_lock, fund_locks_lock, orders_lock
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.results import order_results_signal
from ccp.orders.rules import order_value
from ccp.orders.serializers import order_payload
from ccp.orders.services import books_levels_changed, order_violation, orders_validate_later
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
    rested: set[tuple[str, Decimal]]
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
    ids = list(Order.objects.filter(contract=contract, state=OrderState.RECEIVED)
               .order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    incoming = orders_lock(Order.objects.filter(pk__in=ids))
    for order in incoming:
        order.contract = contract
    if contract.trading_mode != TradingMode.CONTINUOUS:
        orders_validate_later(incoming)
        return 0
    book = _BOOKS.pop(contract_id, None)  # back only when this batch commits
    if book is None or book.sequence != contract.book_sequence:
        book = book_rebuild(contract)
    batch = _Batch(contract, now, incoming, {o.pk: o for o in incoming}, [], defaultdict(Decimal), [], {}, set(), [])
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
            if kind is ev.Trade:
                buy, sell = int(event.buy_order_id), int(event.sell_order_id)
                makers.update(pk for pk in (buy, sell) if pk not in batch.orders)
                batch.executions.append(Execution(
                    contract.pk, scale.price(event.price), scale.qty(event.qty), buy, event.buy_user, sell,
                    event.sell_user, event.aggressor))
            elif kind is ev.Accepted:
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
            elif kind is ev.Rested:
                book.priority += 1
                order.book_priority = book.priority
                batch.rested.add((order.side, order.price))
            elif kind is ev.Cancelled:
                pk = int(event.order_id)
                batch.cancels[pk] = event.reason
                if pk not in batch.orders:
                    makers.add(pk)
    if makers:
        # Resting orders are read, not locked: every writer of a contract's orders holds its row (ccp.locks).
        for order in Order.objects.filter(pk__in=makers - set(batch.orders)):
            order.contract = contract
            batch.orders[order.pk] = order


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
    bulk_update_rows(Order, incoming, ["state", "reject_reason", "quantity", "quantity_requested", "order_value",
                                       "book_priority", "updated_at"])
    bulk_insert_rows(OrderStateHistory, batch.histories)
    if batch.held:
        balances_publish(fund_locks_adjust(settle_value={}, order_value=dict(batch.held), lockup_value={},
                                           now=now).values())
    for client_id, event in batch.events:
        stream_publish(client_group(client_id), event)
    if batch.executions or batch.cancels:
        trades_clear(venue=Venue.BOOK, venue_ref=f"book-{contract.pk}-{min(o.pk for o in incoming)}",
                     executions=batch.executions, orders=batch.orders, contracts={contract.pk: contract},
                     cancels=batch.cancels, now=now, envelope={"type": "book", "contract": contract.symbol})
    if batch.rested:
        books_levels_changed(levels={contract.pk: batch.rested})
