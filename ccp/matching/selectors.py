from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce, Greatest

from ccp.contracts.models import ContractState, Pair, TradingMode
from ccp.matching.models import Auction, AuctionState
from ccp.orders.models import Order
from ccp.orders.states import BOOK_STATES

# A closed or solved auction holds the orders of its snapshot until it is applied.
HOLDING_STATES = [AuctionState.CLOSED.value, AuctionState.SOLVED.value]


def pairs_with_open_orders() -> QuerySet[Pair]:
    """Pairs with validated open orders on listed contracts that trade in auctions (a pair whose only
    orders are on continuous contracts opens no auction)."""
    return (Pair.objects.filter(contracts__state=ContractState.LISTED, contracts__trading_mode=TradingMode.AUCTION,
                                contracts__orders__state__in=BOOK_STATES)
            .select_related("base", "quote").distinct().order_by("id"))


def auctions_to_resume(*, now: datetime, older_than: timedelta,
                       solving_allowance: timedelta | None = None) -> list[int]:
    """Auctions not applied whose last stage is older than ``older_than``: a worker died mid-chain, or a
    broker restart dropped the next stage's message. A closed auction is being solved, which may take
    the solver's time limit (``solving_allowance``, CCP_AUCTION_TIME_LIMIT_SECONDS by default) on top,
    so a solve running to its limit is not started a second time."""
    if solving_allowance is None:
        solving_allowance = timedelta(seconds=float(settings.CCP_AUCTION_TIME_LIMIT_SECONDS))
    last = Greatest("opened_at", Coalesce("closed_at", "opened_at"), Coalesce("solved_at", "opened_at"))
    stalled = (Q(last__lt=now - older_than) & ~Q(state=AuctionState.CLOSED)) | Q(
        state=AuctionState.CLOSED, last__lt=now - older_than - solving_allowance)
    return list(Auction.objects.exclude(state=AuctionState.APPLIED).annotate(last=last).filter(stalled)
                .order_by("id").values_list("id", flat=True))


def auction_holds(order: Order) -> bool:
    """Whether a closed, not yet applied auction's snapshot holds this order (its documents and id
    list are large: only existence is asked)."""
    pair = order.contract.pair
    return Auction.objects.filter(group=str(pair), state__in=HOLDING_STATES, order_ids__contains=[order.pk]).exists()


def auction_held_order_ids(*, pair: Pair, order_ids: Collection[int]) -> set[int]:
    """Which of ``order_ids`` a closed, not yet applied auction of the pair holds."""
    if not order_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute('SELECT h.id FROM matching_auction AS a CROSS JOIN LATERAL unnest(a.order_ids) AS h(id) '
                       'WHERE a."group" = %s AND a.state = ANY(%s) AND h.id = ANY(%s)',
                       [str(pair), HOLDING_STATES, list(order_ids)])
        return {row[0] for row in cursor.fetchall()}


def auction_holds_contracts(*, pair: Pair, contract_ids: Collection[int]) -> bool:
    """Whether a closed, not yet applied auction of the pair holds an open order of these contracts."""
    with connection.cursor() as cursor:
        cursor.execute('SELECT EXISTS (SELECT 1 FROM matching_auction AS a WHERE a."group" = %s AND a.state = ANY(%s) '
                       "AND a.order_ids && ARRAY(SELECT id FROM orders_order "
                       "WHERE contract_id = ANY(%s) AND state = ANY(%s)))",
                       [str(pair), HOLDING_STATES, list(contract_ids), sorted(BOOK_STATES)])
        return cursor.fetchone()[0]
