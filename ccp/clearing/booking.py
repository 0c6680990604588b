"""The booking service: every venue books its matched trades here, and nowhere else.

``trades_clear`` takes the executions a venue matched (an auction's uniform-price fills paired into
trades; later a continuous book's matches, an RFQ, a liquidation) and writes everything a trade changes,
in the caller's transaction:

  1. the trade rows (``trades_book``: idempotent per trade; only fresh trades change anything below,
     so booking the same executions twice has one effect)
  2. the orders: filled quantity, average fill price, last fill, state through the transition table
     (``ccp.orders.states``), then the cancels the venue asks for with them (an auction's cancel
     requests, a halted contract's orders), the order value each still holds, one history row per
     state change
  3. cash movements: the premiums, one per (client, contract) and venue event (a perpetual's: the fills'
     cash relative to its reference price, ``ccp.perps.booking``; a liquidation's fills also the fee to the
     insurance fund, origin ``liquidation_fee``)
  4. positions, with entry price and realised PnL (``ccp.risk.positions``; a perpetual's with its margin)
  5. lockups of the portfolios the positions changed (``ccp.risk.lockups``); a perpetual's positions
     change the fund lock's margin value instead
  6. fund locks: settle value (cash), order value (released), lockup value (the lockups' change)
  7. stream events, queued for after the commit: per client its fills, orders and balances in one
     message, the book levels that changed

Locks (``ccp.locks``): the caller holds the contracts (3) and the orders (4); this takes the fund
locks (5), the positions (6) and the lockups (7).
"""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from ccp.accounts.models import FundLock
from ccp.accounts.services import balance_events, fund_locks_adjust
from ccp.clearing.models import Venue
from ccp.clearing.services import Execution, trades_book, trades_fresh_sent
from ccp.contracts.models import Contract, TradingMode
from ccp.contracts.payoffs import premium_per_unit
from ccp.db import (
    FEW_INSERTS,
    FEW_ROWS,
    Behind,
    Columns,
    Sent,
    bulk_insert_rows,
    bulk_insert_write,
    bulk_update_rows,
    bulk_update_write,
    one_round_trip,
    one_round_trip_after,
    upsert_behind,
    write_behind,
    write_held,
)
from ccp.locks import fund_locks_busy, fund_locks_lock, fund_locks_sent, series_position_rows_sent
from ccp.money import ZERO, money_str, quantize
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.rules import order_held, order_value
from ccp.orders.serializers import order_payload
from ccp.orders.services import books_levels_changed
from ccp.orders.states import BOOK_STATES, OrderState, transition_allowed
from ccp.perps.booking import insurance_fund_keys, liquidation_orders, perp_fills_book, shortfall_lines
from ccp.risk.lockups import Portfolio, lockups_recompute, lockups_sent, portfolio_of
from ccp.risk.models import Position
from ccp.risk.positions import FLAT, PositionState, entry_price, position_move
from ccp.settlement.models import CashMovement, CashMovementOrigin
from ccp.streams import client_stream_publish_many

# The origin of a venue's cash movements (the statement's lines). Venues to come add theirs.
_ORIGINS = {Venue.AUCTION: CashMovementOrigin.AUCTION, Venue.BOOK: CashMovementOrigin.BOOK,
            Venue.LIQUIDATION: CashMovementOrigin.LIQUIDATION}
# Above this many executions a booking writes on a thread while it computes (``ccp.db.Behind``).
BEHIND_ABOVE = FEW_ROWS
# What a fill or a cancel changes on an order.
_ORDER_FILL_FIELDS = ["filled_quantity", "average_fill_price", "last_fill_at", "state", "order_value", "updated_at"]


@dataclass
class Cleared:
    """What a booking changed."""

    trades: list[dict]  # the fresh trade rows, as trades_book returns them
    fund_locks: dict[tuple[int, int], FundLock] = field(default_factory=dict)
    filled: dict[int, Decimal] = field(default_factory=dict)  # order id -> quantity filled now
    # The fund locks changed only by the caller's ``order_value`` (their balances are not in ``messages``).
    others: dict[tuple[int, int], FundLock] = field(default_factory=dict)
    # With ``publish`` false: the private messages and changed levels, for the caller to publish.
    messages: list[tuple[int, dict]] = field(default_factory=list)
    levels: dict[int, set] = field(default_factory=dict)


def order_state_set(order, state: str, *, now: datetime, reason: str, histories: list[dict]) -> None:
    """Move ``order`` to ``state`` through the transition table, with its history row."""
    if not transition_allowed(order.state, state):
        raise ValueError(f"order {order.pk}: {order.state} -> {state} is not an allowed transition")
    histories.append({"order_id": order.pk, "from_state": order.state, "to_state": state, "reason": reason,
                      "filled_quantity": order.filled_quantity, "at": now})
    order.state = state


def _average(order, price: Decimal, quantity: Decimal) -> Decimal | None:
    """The order's average fill price after a fill of ``quantity`` at ``price`` (None stays None for an
    order filled before fill prices were kept)."""
    if not order.filled_quantity:
        return price
    if order.average_fill_price is None:
        return None
    total = order.filled_quantity + quantity
    return quantize((order.average_fill_price * order.filled_quantity + price * quantity) / total, ROUND_HALF_EVEN)


def _orders_write(changed: Sequence, touched: Sequence, touched_fields: Sequence[str], histories: list[dict],
                  behind: Behind) -> None:
    """Queue on ``behind`` the booking's changed orders (``_ORDER_FILL_FIELDS``) and the caller's ``touched`` ones
    (``touched_fields``), each order in one update when it is one object, then the history rows in one insert:
    as held writes (``Behind.write``: sent with the trades before them and the cash movements after them, in
    one statement) when they are few."""
    written = {o.pk: o for o in touched}
    if all(written.setdefault(o.pk, o) is o for o in changed):  # one object per order: it holds all its fields
        objects = [written[pk] for pk in sorted(written)]
        fields = [*_ORDER_FILL_FIELDS, *(name for name in touched_fields if name not in _ORDER_FILL_FIELDS)]
        if len(objects) <= FEW_ROWS and len(histories) <= FEW_ROWS:
            if objects:
                behind.write(bulk_update_write(Order, objects, fields))
            if histories:
                behind.write(bulk_insert_write(OrderStateHistory, histories))
            return
        behind.run(functools.partial(bulk_update_rows, Order, objects, fields))
    else:  # two copies of an order: each writes its own fields, the caller's first
        behind.run(functools.partial(bulk_update_rows, Order, touched, touched_fields))
        behind.run(functools.partial(bulk_update_rows, Order, changed, _ORDER_FILL_FIELDS))
    behind.run(functools.partial(bulk_insert_rows, OrderStateHistory, histories))


def trades_clear(*, venue: Venue, venue_ref: str, executions: Sequence[Execution], orders: Mapping[int, object],
                 contracts: Mapping[int, Contract], cancels: Mapping[int, str], now: datetime,
                 envelope: Mapping[str, object], order_value: Mapping[tuple[int, int], Decimal] | None = None,
                 locked: Mapping[tuple[int, int], FundLock] | None = None, publish: bool = True,
                 touched: Sequence = (), touched_fields: Sequence[str] = (),
                 histories: Sequence[dict] = (), nowait: bool = False, held: Behind | None = None,
                 meanwhile: Callable[[Mapping[int, dict]], object] | None = None) -> Cleared:
    """Book ``executions`` of ``venue``'s event ``venue_ref``, then cancel the orders in ``cancels``
    (order id -> reason) still on the book. ``orders`` holds every order of both (Order or OrderRow
    with ``contract`` set, locked by the caller), ``contracts`` their contracts (locked). Each client's
    events go out after commit as one message ``{**envelope, "events": [...]}``.

    For a venue that changes more in the same transaction (the continuous matcher): ``order_value``,
    more order value changes per (client, currency), applied in the same fund lock update (``others``
    returns the fund locks only they changed); ``locked``, fund locks the caller locked already; with
    ``publish`` false the messages and changed levels are returned (``messages``, ``levels``) for the
    caller to publish with its own, not published here; ``touched``, more orders the caller changed (their
    ``touched_fields``), and ``histories``, the caller's history rows: written with the booking's own, each
    order in one update with both sets of fields (an order both changed was written twice, every index entry
    twice) and the caller's history rows first in one insert; ``nowait``, for a caller that locked some fund
    locks already (``locked``) and may meet others' (the continuous matcher, whose makers are known only once
    it has matched): the fund locks it takes besides are taken without waiting (``fund_locks_lock``: raises
    ``ccp.locks.FundLocksBusy``, and the caller starts again with them among its first); ``held``, the caller's
    ``Behind`` (not threaded) for a booking without a thread: the writes it still holds at the end (the fund
    locks') are left in it, for the caller to send with its next statement (``Behind.held_take``); ``meanwhile``,
    the caller's work that needs no row the booking writes or reads, given the representation (``order_payload``)
    of each order the booking changed, by id: called once, while PostgreSQL runs the booking's writes and its
    positions' reads (``positions_book``), after the booking's own such work (its orders' events)."""
    # The trades, the orders and their history are written on a thread (``ccp.db.Behind``) while the fills
    # and the events are worked out here, in the same transaction and statement order; a perpetual's fills
    # read their liquidation steps on the way, and a small batch costs less without a thread.
    perpetuals = {pk for pk, c in contracts.items() if c.is_perpetual}
    threaded = len(executions) > BEHIND_ABOVE and not perpetuals
    # Positions and lockups (6, 7) are read before the first write is queued, so the thread's writes never hold
    # up the reads (the computing waited there for the trades and orders to be written): only when the caller
    # holds every fund lock this could take (5, before them in the lock order).
    ahead = None
    if threaded and {(o.client_id, o.contract.collateral_id) for o in orders.values()} <= set(locked or {}):
        ahead = positions_read({portfolio_of(client_id, contracts[e.contract_id]) for e in executions
                                for client_id in (e.buy_client_id, e.sell_client_id)}, contracts)
    locked = dict(locked or {})
    fresh = None
    if nowait and not threaded and executions:
        # The makers' fund locks (those of every order the executions and cancels name, a superset of those the
        # booking changes) in the round trip of the booking's first read: one round trip less for a matcher.
        keys = {(client_id, contracts[e.contract_id].collateral_id) for e in executions
                for client_id in (e.buy_client_id, e.sell_client_id)}
        keys |= {(orders[pk].client_id, orders[pk].contract.collateral_id) for pk in cancels}
        if keys := keys - locked.keys():
            with fund_locks_busy(keys, nowait=True), one_round_trip():
                makers = fund_locks_sent(keys=keys, nowait=True)
                fresh = trades_fresh_sent(venue=venue, venue_ref=venue_ref, executions=executions)
            locked.update(makers.result())
    with (Behind(threaded=threaded) if held is None or threaded else contextlib.nullcontext(held)) as behind:
        trades = trades_book(venue=venue, venue_ref=venue_ref, executions=executions, now=now,
                             symbols={contract_id: contract.symbol for contract_id, contract in contracts.items()},
                             behind=behind, fresh=fresh)
        cleared = Cleared(trades)

        # 2. orders: fills (per order and price, in trade order), then cancels
        order_fills: dict[tuple[int, Decimal], Decimal] = defaultdict(Decimal)
        trade_ids: dict[int, list[int]] = defaultdict(list)
        for trade in trades:
            for order_id in (trade["buy_order_id"], trade["sell_order_id"]):
                order_fills[(order_id, trade["price"])] += trade["quantity"]
                trade_ids[order_id].append(trade["id"])
        histories: list[dict] = list(histories)
        events: dict[int, list[dict]] = defaultdict(list)
        levels: dict[int, set] = defaultdict(set)
        # A fill event names the venue's event (an auction's "auction": 42 as the envelope has it)
        refs = {**{k: v for k, v in envelope.items() if k != "type"}, "venue": venue.value, "venue_ref": venue_ref}
        text = functools.lru_cache(maxsize=4096)(money_str)  # fills share prices and quantities
        # (client, contract) -> price -> signed quantity: its position's change, fill by fill price
        traded: dict[tuple[int, int], dict[Decimal, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        # (client, perpetual) -> its fills in trade order, with the order's leverage and margin mode
        perp_fills: dict[tuple[int, int], list[tuple]] = defaultdict(list)
        liquidations = liquidation_orders(order_id for order_id, _ in order_fills
                                          if orders[order_id].contract_id in perpetuals) if perpetuals else {}
        for (order_id, price), quantity in order_fills.items():
            order = orders[order_id]
            signed = quantity if order.side == "buy" else -quantity
            if contracts[order.contract_id].is_perpetual:
                perp_fills[(order.client_id, order.contract_id)].append(
                    (signed, price, order.leverage, order.margin_mode, liquidations.get(order_id, ""), order_id))
            else:
                traded[(order.client_id, order.contract_id)][price] += signed
            order.average_fill_price = _average(order, price, quantity)
            order.filled_quantity += quantity
            order.last_fill_at = now
            cleared.filled[order_id] = cleared.filled.get(order_id, ZERO) + quantity
            full = order.filled_quantity == order.quantity
            order_state_set(order, OrderState.FILLED if full else OrderState.PARTIALLY_FILLED, now=now,
                            reason=venue.value, histories=histories)
            events[order.client_id].append({"type": "fill", "order_id": order_id, **refs,
                                            "contract": order.contract.symbol, "side": order.side,
                                            "price": text(price), "quantity": text(quantity),
                                            "trades": trade_ids[order_id]})
            levels[order.contract_id].add((order.side, order.price))
        for order_id, reason in sorted(cancels.items()):
            order = orders[order_id]
            if order.state in BOOK_STATES:
                order_state_set(order, OrderState.CANCELLED, now=now, reason=reason, histories=histories)
                levels[order.contract_id].add((order.side, order.price))
        changed = [orders[pk] for pk in sorted(set(cleared.filled) | {pk for pk in cancels
                                                                       if orders[pk].state == OrderState.CANCELLED})]
        released = _order_values_release(changed, now)
        _orders_write(changed, touched, touched_fields, histories, behind)
        moves = _premiums(traded, contracts)

        def order_events() -> None:  # the orders are final: their events, while PostgreSQL writes them
            built = {}
            for order in changed:
                built[order.pk] = payload = order_payload(order)
                events[order.client_id].append({"type": "order", "order": payload})
            if meanwhile is not None:
                meanwhile(built)

        # 3-6. cash, positions, lockups, fund locks
        missing = {(o.client_id, o.contract.collateral_id) for o in changed} - locked.keys()
        missing |= insurance_fund_keys(liquidations, orders, contracts, now) - locked.keys()  # liquidation fees
        if missing:  # reads wait for the writes before them: those held go out in the same round trip
            with fund_locks_busy(missing, nowait=nowait), one_round_trip_after(behind):
                makers = fund_locks_sent(keys=missing, nowait=nowait)
            locked.update(makers.result())
        perps = perp_fills_book(fills=perp_fills, contracts=contracts, now=now)
        settle = cash_book(origin=_ORIGINS[venue], origin_ref=venue_ref,
                           lines={**{key: (sum((c for _, c in m), ZERO), sum((q for q, _ in m), ZERO))
                                     for key, m in moves.items()}, **perps.lines},
                           contracts=contracts, now=now, behind=behind)
        if perp_fills:  # the fees' and shortfalls' cash movements, sent at once, come after those held
            behind.wait()
        if perps.fee_lines:
            for key, amount in cash_book(origin=CashMovementOrigin.LIQUIDATION_FEE, origin_ref=venue_ref,
                                         lines=perps.fee_lines, contracts=contracts, now=now).items():
                settle[key] = settle.get(key, ZERO) + amount
        lockup_delta, positions = positions_book(moves=moves, contracts=contracts, now=now, behind=behind,
                                                 read=ahead, meanwhile=order_events)
        positions = positions + perps.rows  # a new list: the rows given to the upsert may not be written yet
        order_deltas = {k: -v for k, v in released.items()}
        for key, value in (order_value or {}).items():
            order_deltas[key] = order_deltas.get(key, ZERO) + value
        if perp_fills and (covered := shortfall_lines(fills=perp_fills, locked=locked, contracts=contracts, now=now,
                                                      deltas=(settle, order_deltas, lockup_delta, perps.margin))):
            fund_keys = {(c, contracts[k].collateral_id) for c, k in covered} - locked.keys()
            # The fund, last: rarely taken here.
            locked.update(fund_locks_lock(keys=fund_keys, nowait=nowait) if fund_keys else {})
            for key, amount in cash_book(origin=CashMovementOrigin.INSURANCE, origin_ref=f"{venue_ref}:shortfall",
                                         lines=covered, contracts=contracts, now=now).items():
                settle[key] = settle.get(key, ZERO) + amount
        adjusted = fund_locks_adjust(settle_value=settle, order_value=order_deltas, lockup_value=lockup_delta, now=now,
                                     margin_value=perps.margin, locked=locked, behind=behind)
        own = set(settle) | set(released) | set(lockup_delta) | set(perps.margin)
        cleared.fund_locks = {key: fund_lock for key, fund_lock in adjusted.items() if key in own}
        cleared.others = {key: fund_lock for key, fund_lock in adjusted.items() if key not in own}
        for row in positions:
            events[row["client_id"]].append({"type": "position", "position": {
                "contract": contracts[row["contract_id"]].symbol, "quantity": text(row["quantity"]),
                "entry_price": None if row["entry_price"] is None else text(row["entry_price"]),
                "realised_pnl": text(row["realised_pnl"])}})
        for client_id, event in balance_events(cleared.fund_locks.values()):
            events[client_id].append(event)

    # 7. pushes after commit
    messages = [(client_id, {**envelope, "events": events[client_id]}) for client_id in sorted(events)]
    if not publish:
        cleared.messages, cleared.levels = messages, dict(levels)
        return cleared
    client_stream_publish_many(messages)
    books_levels_changed(levels=levels)
    return cleared


def _order_values_release(changed: Sequence, now: datetime) -> dict[tuple[int, int], Decimal]:
    """Set each changed order's order value to what its remaining quantity holds (nothing once it
    leaves the book); returns the value released per (client, currency). An auction order on a dated
    contract held what it added to its portfolio at entry (``ccp.orders.rules.order_value_netted``), which
    depends on the positions then: its remainder keeps its stored value, never more than the remainder's
    stand-alone worst case."""

    @functools.cache
    def held(contract_id: int, side: str, price: Decimal, quantity: Decimal, leverage: Decimal | None,
             reduce_only: bool) -> Decimal:
        # Orders share price levels and quantities: one Decimal computation each, not one per order.
        return order_value(contracts[contract_id].terms, side, price, quantity, leverage=leverage,
                           reduce_only=reduce_only)

    contracts = {o.contract_id: o.contract for o in changed}
    released: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for order in changed:
        remaining = order.quantity - order.filled_quantity
        if remaining <= 0 or order.state not in BOOK_STATES:
            value = ZERO
        elif order.attached:  # an entry with a take-profit or stop-loss (continuous contracts)
            value = order_held(order.contract.terms, order.side, order.price, remaining, order.attached,
                               leverage=order.leverage, reduce_only=order.reduce_only)
        else:
            value = held(order.contract_id, order.side, order.price, remaining, order.leverage, order.reduce_only)
            if order.contract.trading_mode == TradingMode.AUCTION and not order.contract.is_perpetual:
                value = min(value, order.order_value)
        released[(order.client_id, order.contract.collateral_id)] += order.order_value - value
        order.order_value, order.updated_at = value, now
    return released


def cash_book(*, origin: str, origin_ref: str, lines: Mapping[tuple[int, int], tuple[Decimal, Decimal]],
              contracts: Mapping[int, Contract], now: datetime, behind: Behind | None = None
              ) -> dict[tuple[int, int], Decimal]:
    """One cash movement per (client, contract) of ``lines`` ((client, contract) -> (amount, position
    change)); returns the settle value change per (client, currency). A line that moves neither (a
    client's own buy and sell crossed) is left out. ``behind``: the caller's writer on a thread
    (``ccp.db.Behind``), which then inserts the rows."""
    rows, settle = [], defaultdict(Decimal)
    for (client_id, contract_id), (amount, quantity) in sorted(lines.items()):
        if not amount and not quantity:
            continue
        contract = contracts[contract_id]
        if amount != quantize(amount):
            raise ValueError(f"amount {amount} of {contract} needs more than 18 decimal places")
        rows.append({"client_id": client_id, "currency_id": contract.collateral_id, "amount": amount,
                     "contract_id": contract_id, "position_delta": quantity, "origin": origin,
                     "origin_ref": origin_ref, "created_at": now})
        settle[(client_id, contract.collateral_id)] += amount
    if not rows:
        return settle
    if len(rows) <= FEW_INSERTS:  # a write ``behind`` may send with the booking's others
        write_held(behind, bulk_insert_write(CashMovement, rows))
    else:
        write_behind(behind, lambda: bulk_insert_rows(CashMovement, rows))
    return settle


def _premiums(traded, contracts) -> dict[tuple[int, int], list[tuple[Decimal, Decimal]]]:
    """(client, contract) -> its position changes as (signed quantity, cash: the premiums paid (negative)
    or received), one per fill price; a client's own buys and sells at one price net out."""

    @functools.cache
    def premium(contract_id: int, price: Decimal) -> Decimal:
        return premium_per_unit(contracts[contract_id].terms, price)

    moves = {key: [(q, -q * premium(key[1], price)) for price, q in by_price.items() if q]
             for key, by_price in traded.items()}
    return {key: changes for key, changes in moves.items() if changes}


def _series_contracts_sent(series: set[tuple[int, object]]) -> Sent:
    """Every contract of these (pair, expiry date) series, in one plain statement (a matcher's batch books
    one: compiling the queryset cost more than reading the rows), sent (``ccp.db.Sent``)."""
    columns = Columns.of(Contract)
    pairs, expiries = zip(*sorted(series, key=str), strict=True)
    return Sent(f"SELECT {columns.select('c')} FROM {Contract._meta.db_table} AS c "
                "JOIN unnest(%s::bigint[], %s::date[]) AS s(pair_id, expiry_date) "
                "ON c.pair_id = s.pair_id AND c.expiry_date = s.expiry_date",
                [list(pairs), list(expiries)], lambda rows: [columns.instance(row) for row in rows])


@dataclass
class PositionsRead:
    """What ``positions_book`` reads, read ahead (``positions_read``): every contract of the portfolios'
    series, their position rows and their lockup rows, locked (6, 7)."""

    contracts: dict[int, Contract]
    positions: list[tuple]
    lockups: list[tuple]


def positions_read(portfolios: Iterable[Portfolio], contracts: Mapping[int, Contract], *,
                   behind: Behind | None = None, meanwhile: Callable[[], object] | None = None) -> PositionsRead:
    """Lock (``ccp.locks`` 6, 7) and read what ``positions_book`` needs of ``portfolios`` (a superset of those it
    will touch is fine: it keeps only theirs), ahead of it: a booking that writes on a thread reads them before
    it queues its first write, and never waits for those writes to read. Three statements in one round trip
    (``ccp.db.one_round_trip``), after ``behind``'s writes (a thread's waited for; those held sent first in it).
    ``meanwhile``: the caller's work that needs none of them, done once they are sent, while PostgreSQL runs them
    (a matcher run's held writes take it several ms: the process would only wait)."""
    portfolios = set(portfolios)
    series = {(pair_id, expiry_date) for _, pair_id, expiry_date in portfolios}
    with one_round_trip_after(behind):
        every_sent = _series_contracts_sent(series)
        positions = series_position_rows_sent({c for c, _, _ in portfolios}, series)
        lockups = lockups_sent(portfolios)
        if meanwhile is not None:
            meanwhile()
    every = {c.pk: contracts.get(c.pk, c) for c in every_sent.result()}
    return PositionsRead(every, positions.result(), lockups.result())


def positions_book(*, moves: Mapping[tuple[int, int], Sequence[tuple]], contracts: Mapping[int, Contract],
                   now: datetime, portfolios: Iterable[Portfolio] = (), behind: Behind | None = None,
                   read: PositionsRead | None = None, meanwhile: Callable[[], object] | None = None
                   ) -> tuple[dict[tuple[int, int], Decimal], list[dict]]:
    """Apply position changes and recompute the lockups of the portfolios they touch (and of
    ``portfolios``); return the lockups' change per (client, currency) and the changed positions' rows
    (dicts by attribute name). ``moves``: (client, contract)
    -> its changes in order, each ``(signed quantity, cash moved to the client)`` (a trade's premiums,
    expiry's payoff). Locks (``ccp.locks``) the positions of the touched portfolios (6), then their
    lockups (7). ``behind``: the caller's writer on a thread (``ccp.db.Behind``): the reads here wait for
    it, the writes go to it. ``read``: those rows, read ahead by the caller (``positions_read`` of at least
    the touched portfolios): nothing is read here then. ``meanwhile``: called once, in the reads' round trip
    (``positions_read``) when there is one, else first."""
    touched = {portfolio_of(client_id, contracts[contract_id]) for client_id, contract_id in moves} | set(portfolios)
    if meanwhile is not None and (read is not None or not touched):
        meanwhile()
    if not touched:
        return {}, []
    if read is None:
        # Every position of the touched portfolios: the lockups net them all.
        read = positions_read(touched, contracts, behind=behind, meanwhile=meanwhile)
    every = read.contracts
    states: dict[tuple[int, int], PositionState] = {}
    for client_id, contract_id, quantity, cost, realised in read.positions:
        if portfolio_of(client_id, every[contract_id]) in touched:
            states[(client_id, contract_id)] = PositionState(quantity, cost, realised)
    rows = []
    for key, changes in sorted(moves.items()):
        terms = every[key[1]].terms
        state = states.get(key, FLAT)
        for quantity, cash in changes:
            state = position_move(state, quantity, cash)
        states[key] = state
        rows.append({"client_id": key[0], "contract_id": key[1], "quantity": state.quantity, "cost": state.cost,
                     "entry_price": entry_price(terms, state), "realised_pnl": state.realised_pnl,
                     "margin_mode": "", "margin": ZERO, "liquidation_px": None, "call_px": None,
                     "liquidation_key": None, "call_key": None, "margin_called_at": None, "updated_at": now})
    upsert_behind(behind, Position, rows, key=["client_id", "contract_id"],
                  replace=["quantity", "cost", "entry_price", "realised_pnl", "updated_at"])
    return lockups_recompute(quantities={k: s.quantity for k, s in states.items()}, contracts=every,
                             touched=touched, now=now, behind=behind, locked=read.lockups), rows

