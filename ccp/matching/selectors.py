from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce, Greatest

from ccp.contracts.models import ContractState, Pair
from ccp.matching.models import Auction, AuctionState
from ccp.orders.models import Order
from ccp.orders.states import BOOK_STATES


def pairs_with_open_orders() -> QuerySet[Pair]:
    """Pairs with validated open orders on listed contracts."""
    return (Pair.objects.filter(contracts__state=ContractState.LISTED, contracts__orders__state__in=BOOK_STATES)
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
    return Auction.objects.filter(group=f"{pair.base.symbol}/{pair.quote.symbol}",
                                  state__in=[AuctionState.CLOSED, AuctionState.SOLVED],
                                  order_ids__contains=[order.pk]).exists()
