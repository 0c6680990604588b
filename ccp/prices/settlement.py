"""The settlement price of a pair from several venues' prices for one minute. Pure.

Rule: the median of the venues' prices; venues further than ``max_deviation`` (relative) from it
are dropped; the price is the median of those kept, and needs at least ``min_venues`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from statistics import median

from ccp.money import QUANTUM


def median_price(prices: Sequence[Decimal]) -> Decimal:
    """The median, at storage precision (an even count averages the middle two, rounded half even)."""
    return Decimal(median(sorted(prices))).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def settlement_price(prices: dict[str, Decimal], *, max_deviation: Decimal,
                     min_venues: int) -> tuple[Decimal, list[str]] | None:
    """``prices``: venue -> price for the minute. Returns (price, venues used) or None when too few agree."""
    if len(prices) < min_venues:
        return None
    middle = median_price(list(prices.values()))
    kept = sorted(venue for venue, price in prices.items() if abs(price - middle) <= max_deviation * middle)
    if len(kept) < min_venues:
        return None
    return median_price([prices[venue] for venue in kept]), kept
