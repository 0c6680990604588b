from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum

from ccp.accounts.models import Client
from ccp.orders.models import Order, Side
from ccp.orders.states import BOOK_STATES, OPEN_STATES, OrderState


def book_levels(*, contract_id: int) -> dict:
    """The public book of a contract, aggregated by price, with the sequence number it is consistent with.

    Takes a share lock on the contract row: no book change (which updates that row) can commit
    between reading the sequence and reading the levels.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT book_sequence FROM contracts_contract WHERE id = %s FOR SHARE", [contract_id])
            (sequence,) = cursor.fetchone()
        levels = level_totals(contract_id=contract_id)
    bids = sorted((lv for lv in levels if lv["side"] == Side.BUY), key=lambda lv: -lv["price"])
    asks = sorted((lv for lv in levels if lv["side"] == Side.SELL), key=lambda lv: lv["price"])
    return {"sequence": sequence, "bids": bids, "asks": asks}


def bbo_of(*, bids: list[dict], asks: list[dict]) -> dict:
    """Best bid and offer from a book's levels, best first (``book_levels``' ``bids`` and ``asks``):
    ``bid``, ``bid_quantity``, ``ask``, ``ask_quantity``, each None on an empty side."""
    bid, ask = (bids[0] if bids else {}), (asks[0] if asks else {})
    return {"bid": bid.get("price"), "bid_quantity": bid.get("quantity"),
            "ask": ask.get("price"), "ask_quantity": ask.get("quantity")}


def books_bbo(*, contract_ids: list[int]) -> dict[int, dict]:
    """``bbo_of`` each contract's book as it is in the caller's transaction, in two statements: the
    best prices per side, then the open quantity at them."""
    best = {row["contract_id"]: row for row in Order.objects.filter(
        contract_id__in=contract_ids, state__in=BOOK_STATES).values("contract_id").annotate(
        bid=Max("price", filter=Q(side=Side.BUY)), ask=Min("price", filter=Q(side=Side.SELL)))}
    prices = {row[side] for row in best.values() for side in ("bid", "ask") if row[side] is not None}
    totals = {(row["contract_id"], row["side"], row["price"]): row
              for row in level_totals_many(contract_ids=list(best), prices=prices)} if prices else {}
    out = {}
    for contract_id in contract_ids:
        row = best.get(contract_id, {})
        bid = totals.get((contract_id, Side.BUY, row.get("bid")))
        ask = totals.get((contract_id, Side.SELL, row.get("ask")))
        out[contract_id] = bbo_of(bids=[bid] if bid else [], asks=[ask] if ask else [])
    return out


def level_totals(*, contract_id: int, prices: set[Decimal] | None = None) -> list[dict]:
    """Open quantity and order count per (side, price) of a contract's book, at ``prices`` if given."""
    return level_totals_many(contract_ids=[contract_id], prices=prices)


def level_totals_many(*, contract_ids: list[int], prices: set[Decimal] | None = None) -> list[dict]:
    """``level_totals`` of several contracts, each row with its ``contract_id``."""
    orders = Order.objects.filter(contract_id__in=contract_ids, state__in=BOOK_STATES)
    if prices is not None:
        orders = orders.filter(price__in=prices)
    return list(orders.values("contract_id", "side", "price")
                .annotate(quantity=Sum(F("quantity") - F("filled_quantity")), orders=Count("id")))


def order_list(*, client: Client, state: str | None = None, contract_symbol: str | None = None) -> QuerySet[Order]:
    """The client's own orders, newest first. Nobody else's are ever in this queryset."""
    orders = Order.objects.filter(client=client).select_related("contract")
    if state:
        orders = orders.filter(state=state)
    if contract_symbol:
        orders = orders.filter(contract__symbol=contract_symbol)
    return orders.order_by("-id")


def order_get(*, client: Client, order_id: int) -> Order | None:
    return (Order.objects.filter(client=client, pk=order_id).select_related("contract")
            .prefetch_related("history").first())


def stale_received_order_ids(*, now: datetime, older_than: timedelta, limit: int = 1000) -> list[int]:
    """Orders waiting for validation longer than ``older_than``, oldest first, at most ``limit``."""
    return list(Order.objects.filter(state=OrderState.RECEIVED, updated_at__lt=now - older_than)
                .order_by("id").values_list("id", flat=True)[:limit])


def open_orders_count(*, client_id: int, validated_only: bool = False) -> int:
    """How many open orders the client has: received, accepted or partially filled (only the last two
    with ``validated_only``)."""
    return Order.objects.filter(client_id=client_id, state__in=BOOK_STATES if validated_only else OPEN_STATES).count()
