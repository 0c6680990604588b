"""Batch auctions in the database: open -> close (snapshot) -> solve -> apply. Each stage is one
transaction, checks the auction's state first and does nothing when it already ran (safe twice).

Budget of a client in an auction: the order value of its orders in the auction plus its lockups of
the portfolios (expiry, pair) those orders trade. Free collateral is never used by an auction, so
order entry goes on during one without racing it; since each accepted order holds its own worst
case and lockups are subadditive, that budget covers any fills of those orders.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from psycopg.types.json import Json

from ccp.accounts.models import Client
from ccp.clearing.booking import trades_clear
from ccp.clearing.models import Venue
from ccp.clearing.pairing import Fill, fills_pair
from ccp.clearing.services import Execution
from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Pair, TradingMode
from ccp.contracts.payoffs import ContractKind, mark_px
from ccp.locks import auction_lock, book_lock, contracts_lock, order_rows_lock
from ccp.matching.auction import (
    AuctionInput,
    AuctionSettings,
    ClientSpec,
    ContractSpec,
    input_from_document,
    input_text,
    input_to_document,
    result_to_document,
)
from ccp.matching.engine import clear
from ccp.matching.models import Auction, AuctionState
from ccp.memory import gc_paused
from ccp.money import money_str
from ccp.orders.models import ORDER_COLUMNS, Order, OrderRow
from ccp.orders.states import BOOK_STATES, OrderState
from ccp.prices.models import ReferencePrice, ReferencePriceKind
from ccp.prices.selectors import index_by_pair
from ccp.risk.models import Lockup, Position
from ccp.streams import book_group, stream_publish

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


_SNAPSHOT = """
    CREATE TEMPORARY TABLE ccp_snapshot ON COMMIT DROP AS
    SELECT o.id, o.client_id, o.contract_id, o.side, o.price, o.quantity - o.filled_quantity AS remaining,
           o.order_value
    FROM orders_order AS o JOIN contracts_contract AS c ON o.contract_id = c.id
    WHERE c.pair_id = %(pair)s AND c.state = %(listed)s AND c.expiry_date > %(today)s
      AND c.trading_mode = %(auction)s AND o.state = ANY(%(book)s) AND o.cancel_requested_at IS NULL
"""
# Price and quantity as the input document writes them (money_str: no trailing zeros), formatted by the server.
_SNAPSHOT_ROWS = """
    SELECT id, client_id, contract_id, side, trim_scale(price)::text, trim_scale(remaining)::text, order_value
    FROM ccp_snapshot ORDER BY id
"""
# The input document as its canonical text, the hash of that text (the stored one: ``json`` keeps it as
# it is) and the snapshot's order ids, written on the server in one statement.
_SNAPSHOT_HELD = """
    UPDATE matching_auction SET input_document = %(document)s,
        input_hash = encode(sha256(convert_to(%(document)s::text, 'UTF8')), 'hex'),
        order_ids = ARRAY(SELECT id FROM ccp_snapshot ORDER BY id),
        orders_count = %(count)s, state = %(state)s, closed_at = %(now)s
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
        cursor.execute(_SNAPSHOT_ROWS)
        rows = cursor.fetchall()
    contracts = Contract.objects.in_bulk({row[2] for row in rows})
    traded = {(row[1], contracts[row[2]].expiry_date) for row in rows}
    client_ids = {client_id for client_id, _ in traded}
    positions = [p for p in Position.objects.select_related("contract").filter(
        client_id__in=client_ids, contract__pair=pair).exclude(quantity=0)
        if (p.client_id, p.contract.expiry_date) in traded]
    contracts.update({p.contract_id: p.contract for p in positions})
    budgets: dict[int, Decimal] = defaultdict(Decimal)
    for lockup in Lockup.objects.filter(client_id__in=client_ids, pair=pair):
        if (lockup.client_id, lockup.expiry_date) in traded:
            budgets[lockup.client_id] += lockup.amount
    for row in rows:
        budgets[row[1]] += row[6]
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
                                        "state": AuctionState.CLOSED.value, "now": now, "auction": auction.pk})
        cursor.execute("DROP TABLE ccp_snapshot")
    return Auction.objects.defer(*_DOCUMENTS).get(pk=auction.pk)


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


def _held_orders(pair: Pair, fills: dict[int, Decimal], prices: dict[str, Decimal]
                 ) -> tuple[dict[int, Contract], dict[int, OrderRow]]:
    """Lock (``ccp.locks``) the contracts, then the orders the apply changes: the auction's filled orders
    and the pair's open orders with a cancel request. Only an order an auction holds gets a cancel request
    (``order_cancel``, the halt) and a pair has one auction at a time, so those are all held by this one
    (the partial index ``order_cancel_requested`` finds them). The contracts are those with a clearing
    price (every fill's) and those of the cancel requests."""
    requested = list(Order.objects.filter(cancel_requested_at__isnull=False, state__in=sorted(BOOK_STATES),
                                          contract__pair=pair).values_list("id", "contract_id"))
    contracts = contracts_lock(Contract.objects.select_related("pair").filter(
        Q(pair=pair, symbol__in=list(prices)) | Q(pk__in={contract_id for _, contract_id in requested})))
    rows = order_rows_lock(", ".join(ORDER_COLUMNS), set(fills) | {pk for pk, _ in requested})
    orders = {row[0]: OrderRow(*row) for row in rows}
    for order in orders.values():
        order.contract = contracts[order.contract_id]  # one instance per contract: terms are built once
    return contracts, orders


def _not_trading(contracts: dict[int, Contract], now: datetime) -> set[int]:
    """The contracts an auction may no longer book fills on at ``now``: not listed, or past 00:00 UTC of
    the expiry day (the halt may not have run yet)."""
    return {pk for pk, c in contracts.items() if c.state != ContractState.LISTED or c.trading_ended(now)}


@gc_paused
@transaction.atomic
def auction_apply(*, auction_id: int, now: datetime) -> Auction:
    """Book the result in one transaction: order fills and states, cash movements (premiums at the
    clearing price), positions, lockups recomputed with netting, fund locks, reference prices;
    then cancels asked for during the auction. Pushes order states, fills, balances, book changes
    and trade reports after commit.

    Fills on a contract no longer trading at ``now`` (halted, expired, settled, or past 00:00 UTC of its
    expiry day: the auction outlived it) are not booked: those orders are cancelled with the reason
    ``contract_halted`` and their order value released; the rest applies. The result document stays as
    solved; ``dropped`` records the contracts, fills and orders left out.

    Locks (``ccp.locks``) the pair's book (exclusive: cancels, the halt and the expiry wait), the
    auction, the contracts, the orders it changes, their fund locks, then positions and lockups."""
    now = require_aware(now)
    auction = Auction.objects.defer(*_DOCUMENTS).get(pk=auction_id)
    if auction.state != AuctionState.SOLVED:
        return auction
    pair = _pair(auction)
    book_lock(pair.pk, exclusive=True)
    auction = auction_lock(auction_id, defer=("input_document", "order_ids"))
    if auction.state != AuctionState.SOLVED:
        return auction  # a duplicate applied it meanwhile
    result = auction.result_document
    fills = {int(f["order"]): Decimal(f["quantity"]) for f in result["fills"]}
    prices = {symbol: Decimal(p) for symbol, p in result["prices"].items()}
    # Only filled orders and cancel requests change; the others are released with the auction's state.
    contracts, orders = _held_orders(pair, fills, prices)
    dropped = _not_trading(contracts, now)
    booked = {pk: fills[pk] for pk, o in orders.items() if pk in fills and o.contract_id not in dropped}
    prices = {contracts[pk].symbol: prices[contracts[pk].symbol] for pk in contracts
              if pk not in dropped and contracts[pk].symbol in prices}
    cancels = {pk: "contract_halted" if o.contract_id in dropped else "cancel_requested"
               for pk, o in orders.items() if o.contract_id in dropped or o.cancel_requested_at}
    cleared = trades_clear(venue=Venue.AUCTION, venue_ref=auction.ref,
                           executions=_executions(orders, booked, prices), orders=orders, contracts=contracts,
                           cancels=cancels, now=now, envelope={"type": "auction", "auction": auction.pk})
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
