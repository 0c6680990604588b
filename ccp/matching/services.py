"""Batch auctions in the database: open -> close (snapshot) -> solve -> apply. Each stage is one
transaction, checks the auction's state first and does nothing when it already ran (safe twice).

Budget of a client in an auction (per collateral currency), fixed at the close under the client's fund
lock: its lockups of the portfolios (pair, expiry) its orders in the auction trade, plus what those
orders hold, plus a reservation of its free collateral,

    reservation = min(available, stand-alone worst cases of those orders - what they hold).

An auction order holds only what it adds to its portfolio's worst case given the client's positions at
entry (``ccp.orders.rules.order_value_netted``), so several of them together may need more than they
hold; lockups are subadditive, so the stand-alone sum bounds what any fill can need. The reservation is
added to the fund lock's ``order_value`` at the close (order entry, withdrawals, the continuous book and
other pairs' auctions cannot spend it meanwhile: each reservation is a locked write) and recorded
(``AuctionReservation``); the apply releases it in the fills' transaction, once (the auction's state
moves to applied with it). A client whose reservation was capped by its available collateral is
*bound*: the engine may spend its whole budget, including what the orders it leaves open held; the apply
then trims those orders' holds, latest first, to what the client has left (available never drops
below zero). An unbound client's fills always fit what their orders release plus the reservation.
"""

from __future__ import annotations

import contextlib
import decimal
import functools
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_UP, Decimal

import psycopg
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from psycopg.types.json import Json

from ccp.accounts.models import Client
from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.clearing.booking import trades_clear
from ccp.clearing.models import Venue
from ccp.clearing.pairing import Fill, fills_pair
from ccp.clearing.services import Execution
from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Pair, TradingMode
from ccp.contracts.payoffs import ContractKind, Leg, mark_px, order_worst_cost, premium_per_unit
from ccp.db import Beside, bulk_update_rows, jit_off, number_array, text_array
from ccp.locks import auction_lock, book_lock, contracts_lock, fund_locks_lock, order_rows_lock
from ccp.matching.auction import (
    AuctionInput,
    AuctionSettings,
    ClientSpec,
    ContractSpec,
    input_from_document,
    input_text,
    input_to_document,
    reasons_from_document,
    result_to_document,
)
from ccp.matching.engine import clear
from ccp.matching.models import Auction, AuctionReservation, AuctionState
from ccp.memory import gc_paused
from ccp.money import ZERO, money_str, quantize
from ccp.orders.models import ORDER_COLUMNS, Order, OrderRow
from ccp.orders.rules import order_value as order_value_of
from ccp.orders.serializers import order_payload
from ccp.orders.states import BOOK_STATES, OrderState
from ccp.perps.cross import cross_unrealised_losses
from ccp.prices.models import ReferencePrice, ReferencePriceKind
from ccp.prices.selectors import index_by_pair
from ccp.risk.collateral import available
from ccp.risk.lockups import lockups_required, portfolio_of
from ccp.risk.models import Lockup, Position
from ccp.streams import book_group, client_stream_publish_many, stream_messages_prepare, stream_publish

# Room for exact sums and products of amounts (below 10^20, 18 decimal places); rounding to storage
# precision (``quantize``) is explicit, so it does not trap.
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation, decimal.Overflow])
# An auction's large columns: stages that only check its state leave them unread.
_DOCUMENTS = ("input_document", "result_document", "order_ids")


def _slot(now: datetime, interval: timedelta) -> datetime:
    step = int(interval.total_seconds())
    return datetime.fromtimestamp(int(now.timestamp()) // step * step, tz=now.tzinfo)


def auction_open(*, pair: Pair, now: datetime, interval: timedelta) -> Auction | None:
    """Open the pair's auction for the current time slot; None when one already exists for the slot
    or an earlier one of the pair is not applied yet (auctions of a pair run one after another).

    One auction not applied per pair is a partial unique constraint (``auction_one_unapplied_per_group``):
    of two openers racing, the second's insert fails and it gets None."""
    now = require_aware(now)
    group = str(pair)
    if Auction.objects.filter(group=group).exclude(state=AuctionState.APPLIED).exists():
        return None
    try:
        with transaction.atomic():
            return Auction.objects.create(group=group, slot=_slot(now, interval), opened_at=now)
    except IntegrityError:  # a racing opener's auction, or this slot's auction already ran
        return None


def _pair(auction: Auction) -> Pair:
    """The pair an auction clears (its group is the pair's name, BASE/QUOTE)."""
    base, _, quote = auction.group.partition("/")
    return Pair.objects.get(base__symbol=base, quote__symbol=quote)


def _portfolio(contract: Contract) -> str:
    return f"{contract.pair} {contract.expiry_date.isoformat()}"


def _reference(contract: Contract, index: Decimal | None) -> Decimal | None:
    """The auction's reference price of a contract: a future's mark at the index, on its tick grid."""
    if index is None or contract.kind != ContractKind.FUTURE:
        return None
    mark = mark_px(contract.terms, index)
    return (mark / contract.tick_size).to_integral_value(ROUND_HALF_EVEN) * contract.tick_size


# The pair's open orders in the snapshot, by id, with price and remaining quantity as the input document writes
# them (money_str: no trailing zeros), formatted by the server.
_SNAPSHOT = """
    SELECT o.id, o.client_id, o.contract_id, o.side, trim_scale(o.price)::text,
           trim_scale(o.quantity - o.filled_quantity)::text, o.order_value
    FROM orders_order AS o JOIN contracts_contract AS c ON o.contract_id = c.id
    WHERE c.pair_id = %(pair)s AND c.state = %(listed)s AND c.expiry_date > %(today)s
      AND c.trading_mode = %(auction)s AND o.state = ANY(%(book)s) AND o.cancel_requested_at IS NULL
    ORDER BY o.id
"""
# The input document as its canonical text, the hash of that text (the stored one: ``json`` keeps it as it is) and
# the snapshot's order ids (an array literal: ``ccp.db.number_array``), written on the server in one statement.
_SNAPSHOT_HELD = """
    UPDATE matching_auction SET input_document = %(document)s,
        input_hash = encode(sha256(convert_to(%(document)s::text, 'UTF8')), 'hex'),
        order_ids = %(order_ids)s::bigint[], orders_count = %(count)s, state = %(state)s, closed_at = %(now)s
    WHERE id = %(auction)s
"""


@gc_paused
@transaction.atomic
def auction_close(*, auction_id: int, now: datetime, settings: AuctionSettings) -> Auction:
    """Snapshot the book: the pair's open, validated orders not held by another auction, on contracts
    still trading in auctions (a continuous contract's orders are the continuous book's), with their
    clients' budgets and positions. Holds the book lock of the pair, so a concurrent cancel lands either
    before the snapshot (the order is left out) or after it (a cancel request, done when the auction is
    applied); the snapshot's order ids mark what the auction holds.
    Locks (``ccp.locks``) the book (exclusive), then the auction."""
    now = require_aware(now)
    auction = Auction.objects.defer(*_DOCUMENTS).get(pk=auction_id)
    if auction.state != AuctionState.OPEN:
        return auction
    pair = _pair(auction)
    book_lock(pair.pk, exclusive=True)
    auction = auction_lock(auction_id, defer=_DOCUMENTS)
    if auction.state != AuctionState.OPEN:
        return auction  # a duplicate closed it meanwhile
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT, {"pair": pair.pk, "listed": ContractState.LISTED, "today": now.date(),
                                   "auction": TradingMode.AUCTION, "book": list(BOOK_STATES)})
        rows = cursor.fetchall()
    # With their pair's currencies: the portfolio names (``_portfolio``) read them, a query each otherwise.
    contracts = Contract.objects.select_related("pair__base", "pair__quote").in_bulk({row[2] for row in rows})
    traded = {(row[1], contracts[row[2]].expiry_date) for row in rows}
    client_ids = {client_id for client_id, _ in traded}
    positions = [p for p in Position.objects.select_related("contract__pair__base", "contract__pair__quote").filter(
        client_id__in=client_ids, contract__pair=pair).exclude(quantity=0)
        if (p.client_id, p.contract.expiry_date) in traded]
    contracts.update({p.contract_id: p.contract for p in positions})
    budgets: dict[int, Decimal] = defaultdict(Decimal)
    for lockup in Lockup.objects.filter(client_id__in=client_ids, pair=pair):
        if (lockup.client_id, lockup.expiry_date) in traded:
            budgets[lockup.client_id] += lockup.amount
    for (client_id, _), amount in _reserve(auction, rows, contracts, now).items():
        budgets[client_id] += amount
    addresses = dict(Client.objects.filter(pk__in=client_ids).values_list("id", "address"))
    held: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for position in positions:
        held[position.client_id][position.contract.symbol] = position.quantity
    # The price rule's reference, inside the interval of valid uniform prices: a future's mark price
    # (its index clamped to its bounds) when the pair has a fresh index, else none, and the rule takes
    # the interval's middle. An option's mark is only its intrinsic value (no volatility model), so its
    # reference is none. The last clearing price anchored the rule before and handed a lone crossing
    # pair's whole surplus to one side (a bid at 150 paid 150 to an offer at 9.7). The reference is
    # part of the stored input: a replay clears the same.
    index = index_by_pair(now=now).get(pair.pk)
    document = input_to_document(AuctionInput(
        contracts=tuple(ContractSpec(c.symbol, c.terms, c.tick_size, c.lot_size, _portfolio(c),
                                     _reference(c, index))
                        for c in sorted(contracts.values(), key=lambda c: c.pk)),
        clients=tuple(ClientSpec(addresses[k], budgets[k], held[k]) for k in sorted(addresses)),
        orders=(), settings=settings, label=f"{auction.group} {auction.slot.isoformat()}",
    ))
    # Straight from the rows to the document's text: a hundred thousand order dicts would only be encoded.
    symbols = {pk: c.symbol for pk, c in contracts.items()}
    text = input_text(document, ((pk, addresses[client_id], symbols[contract_id], side, price, remaining, pk)
                                 for pk, client_id, contract_id, side, price, remaining, _ in rows))
    # A cursor binding its parameters on the server: the client-side one would escape the document's
    # megabytes into the statement's text.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_SNAPSHOT_HELD, {"document": Json(text, dumps=str), "count": len(rows),
                                        "order_ids": number_array(row[0] for row in rows),
                                        "state": AuctionState.CLOSED.value, "now": now, "auction": auction.pk})
    return Auction.objects.defer(*_DOCUMENTS).get(pk=auction.pk)


def _reserve(auction: Auction, rows: list[tuple], contracts: dict[int, Contract], now: datetime
             ) -> dict[tuple[int, int], Decimal]:
    """Set aside each client's reservation (module docstring) out of its available collateral, per
    (client, currency): locks (``ccp.locks`` 5) the fund locks, adds the reservation to their order
    value, records it. Returns what the auction may use beyond the lockups: the orders' holds plus the
    reservation."""
    held: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    standalone: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    unit = functools.cache(lambda contract_id, side, price: order_worst_cost(
        contracts[contract_id].terms, side, Decimal(price), Decimal(1)))
    collateral = {pk: contract.collateral_id for pk, contract in contracts.items()}
    # Orders share contracts, sides, prices and remainders (a hundred thousand rows, under half of them distinct):
    # each worst case is worked out once.
    worst: dict[tuple[int, str, str, str], Decimal] = {}
    with decimal.localcontext(_EXACT):
        for _, client_id, contract_id, side, price, remaining, value in rows:
            key = (client_id, collateral[contract_id])
            held[key] += value
            if (cost := worst.get(level := (contract_id, side, price, remaining))) is None:
                cost = worst[level] = quantize(unit(contract_id, side, price) * Decimal(remaining), ROUND_UP)
            standalone[key] += cost
    fund_locks = fund_locks_lock(keys=list(held))
    losses = {(client_id, currency_id): loss for currency_id in {c for _, c in held}  # a cross perpetual loss
              for client_id, loss in cross_unrealised_losses(  # at the mark is not free collateral
                  client_ids={k for k, c in held if c == currency_id}, currency_id=currency_id).items()}
    amounts, reservations = {}, []
    for key in sorted(held):
        wanted = max(standalone[key] - held[key], ZERO)
        fund_lock = fund_locks.get(key)
        free = available(fund_lock) - losses.get(key, ZERO) if fund_lock is not None else ZERO
        amount = min(max(free, ZERO), wanted)
        if amount or amount < wanted:
            reservations.append(AuctionReservation(auction=auction, client_id=key[0], currency_id=key[1],
                                                   amount=amount, held=held[key], standalone=standalone[key],
                                                   bound=amount < wanted))
        if amount:
            amounts[key] = amount
    AuctionReservation.objects.bulk_create(reservations)
    if amounts:
        balances_publish(fund_locks_adjust(settle_value={}, order_value=amounts, lockup_value={}, now=now,
                                           locked=fund_locks).values())
    return {key: held[key] + amounts.get(key, ZERO) for key in held}


@gc_paused
def auction_solve(*, auction_id: int, now: datetime) -> Auction:
    """Clear the snapshot (outside any transaction: the solver may take seconds) and store the result."""
    auction = Auction.objects.defer("order_ids").get(pk=auction_id)
    if auction.state != AuctionState.CLOSED:
        return auction
    result = clear(input_from_document(auction.input_document))
    with transaction.atomic():
        # The documents are large: the lock and the update leave the input document alone.
        auction = auction_lock(auction_id, defer=("input_document", "order_ids"))
        if auction.state != AuctionState.CLOSED:
            return auction  # a duplicate solved it meanwhile: same input, same result
        auction.result_document = result_to_document(result)
        auction.status, auction.solver = result.status, result.solver
        auction.welfare, auction.upper_bound = result.welfare, result.upper_bound
        auction.fills_count, auction.timings = len(result.fills), {k: round(v, 6) for k, v in result.timings.items()}
        auction.state, auction.solved_at = AuctionState.SOLVED, require_aware(now)
        auction.save(update_fields=["result_document", "status", "solver", "welfare", "upper_bound", "fills_count",
                                    "timings", "state", "solved_at"])
    return auction


def _held_orders(pair: Pair, fills: dict[int, Decimal], prices: dict[str, Decimal], *, auction_id: int,
                 bound: list[int]) -> tuple[dict[int, Contract], dict[int, OrderRow], dict[int, OrderRow]]:
    """Lock (``ccp.locks``) the contracts, then the orders the apply changes: the auction's filled orders
    and the pair's open orders with a cancel request, and the other snapshot orders of ``bound`` clients
    with fills (their holds may be trimmed, returned apart). Only an order an auction holds gets a cancel
    request (``order_cancel``, the halt) and a pair has one auction at a time, so those are all held by
    this one (the partial index ``order_cancel_requested`` finds them). The contracts locked are those
    with a clearing price (every fill's) and those of the cancel requests; a trimmed order's is read."""
    requested = list(Order.objects.filter(cancel_requested_at__isnull=False, state__in=sorted(BOOK_STATES),
                                          contract__pair=pair).values_list("id", "contract_id"))
    contracts = contracts_lock(Contract.objects.select_related("pair").filter(
        Q(pair=pair, symbol__in=list(prices)) | Q(pk__in={contract_id for _, contract_id in requested})))
    changed = set(fills) | {pk for pk, _ in requested}
    rows = order_rows_lock(", ".join(ORDER_COLUMNS), changed | set(_bound_orders(auction_id, bound, fills)))
    orders, kept = {}, {}
    for row in rows:
        order = OrderRow(*row)
        (orders if order.id in changed else kept)[order.id] = order
    others = Contract.objects.select_related("pair").in_bulk({o.contract_id for o in kept.values()} - set(contracts))
    for order in (*orders.values(), *kept.values()):
        # one instance per contract: terms are built once
        order.contract = contracts.get(order.contract_id) or others[order.contract_id]
    return contracts, orders, kept


def _bound_orders(auction_id: int, bound: list[int], fills: dict[int, Decimal]) -> list[int]:
    """The open orders of the auction's snapshot whose client is bound and has a fill."""
    if not bound or not fills:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT client_id FROM orders_order WHERE id = ANY(%s::bigint[]) "
                       "AND client_id = ANY(%s)", [number_array(sorted(fills)), bound])
        clients = [row[0] for row in cursor.fetchall()]
        if not clients:
            return []
        cursor.execute("SELECT o.id FROM orders_order AS o WHERE o.client_id = ANY(%s) AND o.state = ANY(%s) "
                       "AND o.id IN (SELECT unnest(order_ids) FROM matching_auction WHERE id = %s)",
                       [clients, sorted(BOOK_STATES), auction_id])
        return [row[0] for row in cursor.fetchall()]


def _holds_trim(*, pair: Pair, orders: dict[int, OrderRow], kept: dict[int, OrderRow], booked: dict[int, Decimal],
                cancels: dict[int, str], prices: dict[str, Decimal], bound: list[int],
                fund_locks: dict[tuple[int, int], object], order_value: dict[tuple[int, int], Decimal]
                ) -> list[OrderRow]:
    """For each bound client with fills (module docstring), the holds the orders it leaves open keep:
    what they would keep (their stored value, at most their remainder's stand-alone worst case), cut
    latest order first by whatever the apply would take its available collateral below zero (computed
    exactly: the fills' premiums at the clearing prices, the lockups they change, what the orders
    release and the reservation). The cuts are added to ``order_value`` (per (client, currency), the fund
    locks' change) and set on the orders: a changed order's value so the booking releases nothing more of
    it, an order the apply leaves untouched returned to be written."""
    clients = {orders[pk].client_id for pk in booked} & set(bound)
    if not clients:
        return []
    mine = sorted((o for o in (*orders.values(), *kept.values()) if o.client_id in clients), key=lambda o: o.pk)
    target: dict[int, Decimal] = {}
    after: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    quantities: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    every: dict[int, Contract] = {}
    with decimal.localcontext(_EXACT):
        for order in mine:
            left = order.quantity - order.filled_quantity - booked.get(order.pk, ZERO)
            value = ZERO if order.pk in cancels or not left else min(order.order_value, order_value_of(
                order.contract.terms, order.side, order.price, left))
            target[order.pk] = value
            key = (order.client_id, order.contract.collateral_id)
            after[key] += order.order_value - value
            if order.pk in booked:
                signed = booked[order.pk] if order.side == "buy" else -booked[order.pk]
                after[key] -= signed * premium_per_unit(order.contract.terms, prices[order.contract.symbol])
                quantities[(order.client_id, order.contract_id)] += signed
                every[order.contract_id] = order.contract
        touched = {portfolio_of(client_id, every[contract_id]) for client_id, contract_id in quantities}
        for key in after:
            after[key] += available(fund_locks[key]) - order_value.get(key, ZERO)  # the reservation's release
        expiries = {every[contract_id].expiry_date for _, contract_id in quantities}
        for position in Position.objects.filter(client_id__in=clients, contract__pair=pair,
                                                contract__expiry_date__in=expiries).exclude(quantity=0).select_related(
                "contract"):
            if portfolio_of(position.client_id, position.contract) in touched:
                quantities[(position.client_id, position.contract_id)] += position.quantity
                every.setdefault(position.contract_id, position.contract)
        legs: dict[tuple, list[Leg]] = {key: [] for key in touched}
        for (client_id, contract_id), quantity in sorted(quantities.items()):
            if quantity:
                legs[portfolio_of(client_id, every[contract_id])].append(Leg(every[contract_id].terms, quantity))
        currency = {(c.pair_id, c.expiry_date): c.collateral_id for c in every.values()}
        current = {(lockup.client_id, lockup.pair_id, lockup.expiry_date): lockup.amount for lockup in
                   Lockup.objects.filter(client_id__in=clients, pair=pair, expiry_date__in=expiries)}
        for portfolio, amount in lockups_required(legs).items():
            client_id, pair_id, expiry_date = portfolio
            after[(client_id, currency[(pair_id, expiry_date)])] -= amount - current.get(portfolio, ZERO)
    short = {key: -value for key, value in after.items() if value < 0}
    written = []
    for order in reversed(mine):  # latest first
        key = (order.client_id, order.contract.collateral_id)
        if key not in short:
            continue
        cut = min(target[order.pk], short[key])
        target[order.pk] -= cut
        short[key] -= cut
        if order.order_value == target[order.pk]:
            continue
        order_value[key] = order_value.get(key, ZERO) - (order.order_value - target[order.pk])
        order.order_value = target[order.pk]
        if order.pk in kept:
            written.append(order)
    return written


# Only the orders whose reason changes are locked (in id order) and written: an order's reason mostly
# stays from one auction to the next.
_REASONS_SET = """
    UPDATE orders_order AS o SET unfilled_reason = l.reason, updated_at = %s
    FROM (SELECT x.id, r.reason FROM orders_order AS x JOIN unnest(%s::bigint[], %s::text[]) AS r(id, reason)
          ON x.id = r.id WHERE x.state = ANY(%s) AND x.unfilled_reason IS DISTINCT FROM r.reason
          ORDER BY x.id FOR NO KEY UPDATE OF x) AS l
    WHERE o.id = l.id
    RETURNING o.id, o.client_id, o.unfilled_reason
"""


def _reasons_store(result: dict, orders: dict[int, OrderRow], kept: dict[int, OrderRow], booked: dict[int, Decimal],
                   cancels: dict[int, str], now: datetime) -> tuple[list[OrderRow], Beside | None]:
    """Store on each order the auction leaves open or partly filled the engine's reason (the result's
    ``reasons``: limit, collateral, priority, halted), and clear it on an order it fills; nothing when the
    result gives no reasons, and an order the apply cancels keeps its cancel reason. Locks (``ccp.locks``
    4, in id order) the orders whose reason changes, in one statement each for the orders the apply
    holds (``orders``, ``kept``) and for the others. Returns the orders of ``kept`` whose reason changed
    (their ``order`` events go with the others the apply changes) and the others' statement: tens of
    thousands of rows on a fresh book, written on a second connection beside the apply (``ccp.db.Beside``:
    the apply holds none of them, and every other writer of an auction's orders waits for the book lock
    the apply holds), whose rows ``(id, client, reason)`` give one ``unfilled`` event per client."""
    given = reasons_from_document(result)  # order id -> reason
    if not given:
        return [], None
    wanted = {int(pk): str(reason) for pk, reason in given.items()
              if int(pk) not in cancels and len(str(reason)) <= 16}
    for pk, order in orders.items():
        if pk in booked and booked[pk] == order.quantity - order.filled_quantity:
            wanted[pk] = ""  # filled: no reason any more
        if pk in wanted:
            order.unfilled_reason = wanted[pk]
    for pk, order in kept.items():
        order.unfilled_reason = wanted.get(pk, order.unfilled_reason)
    held = sorted(pk for pk in wanted if pk in orders or pk in kept)
    with connection.cursor() as cursor:
        cursor.execute(_REASONS_SET, [now, number_array(held), text_array(wanted[pk] for pk in held),
                                      sorted(BOOK_STATES)])
        changed = [kept[pk] for pk, _, _ in sorted(cursor.fetchall()) if pk in kept]  # read before: their value
    for order in changed:  # may change too
        order.updated_at = now
    others = sorted(pk for pk in wanted if pk not in orders and pk not in kept)
    beside = Beside(_REASONS_SET, [now, number_array(others), text_array(wanted[pk] for pk in others),
                                   sorted(BOOK_STATES)]) if others else None
    return changed, beside


def _unfilled_events(beside: Beside | None) -> dict[int, list[dict]]:
    """Per client, ``{"id", "unfilled_reason"}`` of each order whose reason the statement beside changed."""
    events: dict[int, list[dict]] = defaultdict(list)
    for pk, client_id, reason in sorted(beside.rows() if beside else ()):
        events[client_id].append({"id": pk, "unfilled_reason": reason})
    return dict(events)


def _not_trading(contracts: dict[int, Contract], now: datetime) -> set[int]:
    """The contracts an auction may no longer book fills on at ``now``: not listed, or past 00:00 UTC of
    the expiry day (the halt may not have run yet)."""
    return {pk for pk, c in contracts.items() if c.state != ContractState.LISTED or c.trading_ended(now)}


@gc_paused
@transaction.atomic
def auction_apply(*, auction_id: int, now: datetime) -> Auction:
    """Book the result in one transaction: order fills and states, cash movements (premiums at the
    clearing price), positions, lockups recomputed with netting, fund locks, reference prices;
    then cancels asked for during the auction; the reservations released (bound clients' open orders'
    holds trimmed to what they have left, module docstring); each order left open given the engine's
    reason (``unfilled_reason``). Pushes order states, fills, balances, book changes and trade reports
    after commit.

    Fills on a contract no longer trading at ``now`` (halted, expired, settled, or past 00:00 UTC of its
    expiry day: the auction outlived it) are not booked: those orders are cancelled with the reason
    ``contract_halted`` and their order value released; the rest applies. The result document stays as
    solved; ``dropped`` records the contracts, fills and orders left out.

    Locks (``ccp.locks``) the pair's book (exclusive: cancels, the halt and the expiry wait), the
    auction, the contracts, the orders it changes, their fund locks and those of the reservations, then
    positions and lockups."""
    now = require_aware(now)
    auction = Auction.objects.defer(*_DOCUMENTS).get(pk=auction_id)
    if auction.state != AuctionState.SOLVED:
        return auction
    pair = _pair(auction)
    book_lock(pair.pk, exclusive=True)
    auction = auction_lock(auction_id, defer=("input_document", "order_ids"))
    if auction.state != AuctionState.SOLVED:
        return auction  # a duplicate applied it meanwhile
    jit_off()  # the book levels statement over the pair's whole book would be compiled first
    result = auction.result_document
    fills = {int(f["order"]): Decimal(f["quantity"]) for f in result["fills"]}
    prices = {symbol: Decimal(p) for symbol, p in result["prices"].items()}
    reservations = list(AuctionReservation.objects.filter(auction_id=auction.pk, released_at__isnull=True)
                        .order_by("client_id", "currency_id"))
    bound = sorted({r.client_id for r in reservations if r.bound})
    # Only filled orders, cancel requests and bound clients' orders change; the others are released with
    # the auction's state.
    contracts, orders, kept = _held_orders(pair, fills, prices, auction_id=auction.pk, bound=bound)
    dropped = _not_trading(contracts, now)
    booked = {pk: fills[pk] for pk, o in orders.items() if pk in fills and o.contract_id not in dropped}
    prices = {contracts[pk].symbol: prices[contracts[pk].symbol] for pk in contracts
              if pk not in dropped and contracts[pk].symbol in prices}
    cancels = {pk: "contract_halted" if o.contract_id in dropped else "cancel_requested"
               for pk, o in orders.items() if o.contract_id in dropped or o.cancel_requested_at}
    reasoned, beside = _reasons_store(result, orders, kept, booked, cancels, now)  # orders (4): before fund locks
    with beside or contextlib.nullcontext():  # the statement beside: rolled back unless committed
        keys = {(o.client_id, o.contract.collateral_id) for o in (*orders.values(), *kept.values())}
        fund_locks = fund_locks_lock(keys=keys | {(r.client_id, r.currency_id) for r in reservations})
        released: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        for reservation in reservations:
            released[(reservation.client_id, reservation.currency_id)] -= reservation.amount
        trimmed = _holds_trim(pair=pair, orders=orders, kept=kept, booked=booked, cancels=cancels, prices=prices,
                              bound=bound, fund_locks=fund_locks, order_value=released)
        cleared = trades_clear(venue=Venue.AUCTION, venue_ref=auction.ref,
                               executions=_executions(orders, booked, prices), orders=orders, contracts=contracts,
                               cancels=cancels, now=now, envelope={"type": "auction", "auction": auction.pk},
                               order_value={k: v for k, v in released.items() if v}, locked=fund_locks)
        for order in trimmed:
            order.updated_at = now
        bulk_update_rows(Order, trimmed, ["order_value", "updated_at"])
        balances_publish(cleared.others.values())  # only the reservation's release changed them
        AuctionReservation.objects.filter(pk__in=[r.pk for r in reservations]).update(released_at=now)
        ReferencePrice.objects.bulk_create([
            ReferencePrice(contract=contract, kind=ReferencePriceKind.CLEARING, price=prices[contract.symbol], at=now,
                           auction_ref=auction.ref)
            for contract in sorted(contracts.values(), key=lambda c: c.pk) if contract.symbol in prices])
        _trade_reports(auction, cleared.trades, contracts, prices)
        halted = sorted(pk for pk, reason in cancels.items()
                        if reason == "contract_halted" and orders[pk].state == OrderState.CANCELLED)
        if dropped:
            auction.dropped = {"contracts": sorted(contracts[pk].symbol for pk in dropped),
                               "fills": sorted(set(fills) - set(booked)), "cancelled": halted}
        auction.state, auction.applied_at = AuctionState.APPLIED, now
        auction.save(update_fields=["state", "applied_at", "dropped"])
        touched = sorted({o.pk: o for o in (*trimmed, *reasoned)}.values(), key=lambda o: o.pk)
        unfilled = _unfilled_events(beside)
        client_stream_publish_many([
            *((o.client_id, {"type": "order", "order": order_payload(o)}) for o in touched),
            *((client, {"type": "unfilled", "auction": auction.ref, "orders": unfilled[client]})
              for client in sorted(unfilled))])
        stream_messages_prepare()  # serialized while the commits below are under way; sent after them
        if beside is not None:
            beside.commit()  # the last statement before the apply's own commit
    return auction


def _executions(orders: dict[int, OrderRow], booked: dict[int, Decimal], prices: dict[str, Decimal]
                ) -> list[Execution]:
    """Pair each contract's fills into trades (``ccp.clearing.pairing``: by order id) at its price."""
    fills: dict[int, list[Fill]] = defaultdict(list)
    for pk in sorted(booked):
        order = orders[pk]
        fills[order.contract_id].append(Fill(pk, order.side, booked[pk]))
    executions = []
    for contract_id in sorted(fills):
        price = prices[orders[fills[contract_id][0].order_id].contract.symbol]
        executions.extend(Execution(contract_id, price, pair.quantity, pair.buy_order_id,
                                    orders[pair.buy_order_id].client_id, pair.sell_order_id,
                                    orders[pair.sell_order_id].client_id)
                          for pair in fills_pair(fills[contract_id]))
    return executions


def _trade_reports(auction, trades, contracts, prices) -> None:
    """One trade report per contract: the auction's volume at its price, with the sequences of the
    trades it booked (``first_sequence`` .. ``last_sequence``, as in GET /contracts/<symbol>/trades)."""
    volume: dict[int, Decimal] = defaultdict(Decimal)
    sequences: dict[int, list[int]] = {}
    for trade in trades:
        volume[trade["contract_id"]] += trade["quantity"]
        sequences.setdefault(trade["contract_id"], [trade["sequence"], trade["sequence"]])[1] = trade["sequence"]
    for contract_id in sorted(volume):
        symbol = contracts[contract_id].symbol
        stream_publish(book_group(contract_id), {
            "type": "trade", "auction": auction.pk, "contract": symbol, "price": money_str(prices[symbol]),
            "quantity": money_str(volume[contract_id]), "first_sequence": sequences[contract_id][0],
            "last_sequence": sequences[contract_id][1]})
