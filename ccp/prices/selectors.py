from datetime import datetime, timedelta

from django.db.models import Max, QuerySet

from ccp.clock import require_aware
from ccp.contracts.models import ContractState, Pair
from ccp.prices.models import SpotPrice, VenueSymbol


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
