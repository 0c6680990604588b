from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Max, QuerySet

from ccp.clock import require_aware
from ccp.contracts.models import ContractState, Pair
from ccp.prices.models import SpotPrice, VenueSymbol
from ccp.prices.settlement import median_price


def polled_venue_symbols() -> QuerySet[VenueSymbol]:
    """The enabled venue markets of every pair with a live (listed or halted) contract: what the spot
    price loop asks the venues for."""
    return (VenueSymbol.objects.select_related("pair__base", "pair__quote")
            .filter(enabled=True, pair__contracts__state__in=[ContractState.LISTED, ContractState.HALTED])
            .distinct().order_by("pair_id", "venue"))


def spot_price_ages(*, now: datetime) -> dict[Pair, timedelta | None]:
    """For every pair the spot price loop polls, how old its newest venue price is at ``now`` (None: it
    has none)."""
    now = require_aware(now)
    pairs = {symbol.pair_id: symbol.pair for symbol in polled_venue_symbols()}
    newest = dict(SpotPrice.objects.filter(pair_id__in=pairs, is_settlement=False).values("pair_id")
                  .annotate(newest=Max("observed_at")).values_list("pair_id", "newest"))
    return {pair: (now - newest[pk]) if pk in newest else None for pk, pair in pairs.items()}


@dataclass(frozen=True)
class IndexPrice:
    """A pair's index: the median of each venue's newest fresh price (None without any), and those prices."""

    pair: Pair
    price: Decimal | None
    venues: tuple[SpotPrice, ...]


def index_prices(*, now: datetime) -> list[IndexPrice]:
    """The index of every pair the spot price loop polls: each venue's newest price observed less than
    CCP_SPOT_STALE_AFTER before ``now``; their median; no fresh venue, no index (a stale price is
    never used for anything that moves money)."""
    now = require_aware(now)
    pairs = {symbol.pair_id: symbol.pair for symbol in polled_venue_symbols()}
    fresh = (SpotPrice.objects.filter(pair_id__in=pairs, is_settlement=False,
                                      observed_at__gt=now - settings.CCP_SPOT_STALE_AFTER, observed_at__lte=now)
             .order_by("pair_id", "source", "-observed_at").distinct("pair_id", "source"))
    by_pair: dict[int, list[SpotPrice]] = {pk: [] for pk in pairs}
    for price in fresh:
        by_pair[price.pair_id].append(price)
    return [IndexPrice(pair=pairs[pk], price=median_price([p.price for p in quotes]) if quotes else None,
                       venues=tuple(quotes))
            for pk, quotes in sorted(by_pair.items(), key=lambda item: str(pairs[item[0]]))]


def index_by_pair(*, now: datetime) -> dict[int, Decimal]:
    """Pair id -> index price, for the pairs that have one at ``now``."""
    return {index.pair.pk: index.price for index in index_prices(now=now) if index.price is not None}
