"""The clearing-price rule as it was before issue 14 (quadratic in the width of the filled price range), kept
as the reference the n log n ``ccp.matching.uncross.clearing_price`` is compared with."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_DOWN, Decimal

from ccp.matching.uncross import LotOrder


def clearing_price_quadratic(orders: Sequence[LotOrder], fills: dict[str, int], tick: Decimal,
                   reference: Decimal | None) -> Decimal | None:
    """The uniform price of a contract's fills, by one documented rule; None when nothing traded.

    1. Only prices inside every filled order's limit qualify: [highest filled sell limit, lowest
       filled buy limit], on the tick grid.
    2. Among them, the least unmet pressure: unfilled buy lots with a limit above the price plus
       unfilled sell lots with a limit below it (excess demand pushes the price up, supply down).
    3. Then the price nearest the input's reference price; without one, nearest the middle of the
       range in 1. The live system gives no reference today (it will give the contract's mark price
       once there is one): the last clearing price, stale by nature, used to hand a lone crossing
       pair's whole surplus to one side. A document written by hand may give any reference.
    4. Then the lower price.
    """
    filled = [o for o in orders if fills.get(o.id, 0) > 0]
    if not filled:
        return None
    low = max((o.price for o in filled if o.side == "sell"), default=None)
    high = min((o.price for o in filled if o.side == "buy"), default=None)
    if low is None or high is None or low > high:
        raise ValueError("fills are not consistent with one price")
    unfilled = [(o.side, o.price, o.lots - fills.get(o.id, 0)) for o in orders if o.lots > fills.get(o.id, 0)]

    def pressure(price: Decimal) -> int:
        return sum(lots for side, limit, lots in unfilled
                   if (side == "buy" and limit > price) or (side == "sell" and limit < price))

    # The pressure only changes at limit prices: evaluate each breakpoint and one point of each gap.
    points = sorted({low, high} | {limit for _, limit, _ in unfilled if low < limit < high})
    regions: list[tuple[Decimal, Decimal]] = [(p, p) for p in points]
    for left, right in zip(points, points[1:], strict=False):
        first, last = left + tick, right - tick
        if first <= last:
            regions.append((first, last))
    scored = [(pressure(lo), lo, hi) for lo, hi in regions]
    best = min(score for score, _, _ in scored)
    target = reference if reference is not None else (low + high) / 2
    candidates = []
    for score, lo, hi in scored:
        if score == best:
            snapped = (target / tick).quantize(Decimal(1), rounding=ROUND_HALF_DOWN) * tick
            candidates.append(min(max(snapped, lo), hi))
    return min(candidates, key=lambda p: (abs(p - target), p))
