"""Price-time priority uncross of one contract and the uniform clearing-price rule. Pure, exact.

Quantities are whole lots (ints); prices are Decimals on the contract's tick grid.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_HALF_DOWN, Decimal
from typing import NamedTuple


class LotOrder(NamedTuple):
    """An order in whole lots (immutable; a named tuple: cheaper to build by the hundred thousand than a
    frozen dataclass)."""

    id: str
    side: str  # "buy" | "sell"
    price: Decimal
    lots: int
    priority: int


def priority_key(order: LotOrder) -> tuple:
    # Best price first, then earlier; the id makes the order total (deterministic).
    return (-order.price if order.side == "buy" else order.price, order.priority, order.id)


_TIME, _PRICE, _PRICE_TIME = (operator.attrgetter("priority", "id"), operator.attrgetter("price"),
                              operator.attrgetter("price", "priority", "id"))


def by_priority(orders: Iterable[LotOrder], timed: bool = False) -> tuple[list[LotOrder], list[LotOrder]]:
    """The buys and the sells, each in price-time priority (``priority_key``'s order). ``timed``: the
    orders come in time order already (by priority, then id), so one sort by price per side keeps it."""
    orders = list(orders)
    # By C-level keys: sorts are stable, also reversed (higher buys first).
    buys = [o for o in orders if o.side == "buy"]
    sells = [o for o in orders if o.side == "sell"]
    if not timed:
        buys.sort(key=_TIME)
    buys.sort(key=_PRICE, reverse=True)
    sells.sort(key=_PRICE if timed else _PRICE_TIME)
    return buys, sells


def uncross(orders: Iterable[LotOrder], timed: bool = False) -> dict[str, int]:
    """Fill the highest buys against the lowest sells while they cross, in price-time priority.

    The volume is the largest at which the marginal buy still pays at least the marginal sell,
    which maximises traded surplus without collateral limits. Returns filled lots per order id.
    ``timed``: as ``by_priority``'s.
    """
    buys, sells = by_priority(orders, timed)
    fills: dict[str, int] = {}
    i = j = 0
    buy_left = buys[0].lots if buys else 0
    sell_left = sells[0].lots if sells else 0
    while i < len(buys) and j < len(sells) and buys[i].price >= sells[j].price:
        take = min(buy_left, sell_left)
        fills[buys[i].id] = fills.get(buys[i].id, 0) + take
        fills[sells[j].id] = fills.get(sells[j].id, 0) + take
        buy_left -= take
        sell_left -= take
        if buy_left == 0:
            i += 1
            buy_left = buys[i].lots if i < len(buys) else 0
        if sell_left == 0:
            j += 1
            sell_left = sells[j].lots if j < len(sells) else 0
    return fills


def allocate_by_priority(orders: Sequence[LotOrder], lots: int) -> dict[str, int]:
    """Share ``lots`` among orders of one price level, earliest first."""
    fills = {}
    for order in sorted(orders, key=priority_key):
        if lots <= 0:
            break
        take = min(order.lots, lots)
        fills[order.id] = take
        lots -= take
    return fills


def clearing_price(orders: Sequence[LotOrder], fills: dict[str, int], tick: Decimal,
                   reference: Decimal | None,
                   affordable: Callable[[LotOrder, int], int] | None = None) -> Decimal | None:
    """The uniform price of a contract's fills, by one documented rule; None when nothing traded.

    1. Only prices inside every filled order's limit qualify: [highest filled sell limit, lowest
       filled buy limit], on the tick grid.
    2. Among them, the least unmet pressure: unfilled buy lots with a limit above the price plus
       unfilled sell lots with a limit below it (excess demand pushes the price up, supply down).
       Only lots the order's client can still afford count (``affordable(order, open lots)``: by
       default every open lot); a lot collateral forbids is not unmet demand or supply.
    3. Then the price nearest the input's reference price; without one, nearest the middle of the
       range in 1. The live system gives no reference today (it will give the contract's mark price
       once there is one): the last clearing price, stale by nature, used to hand a lone crossing
       pair's whole surplus to one side. A document written by hand may give any reference.
    4. Then the lower price.

    O(n log n): the pressure only changes at limit prices; at each breakpoint and in each gap between
    two it is read from cumulative sums of the open lots sorted by limit (a bisection each).
    """
    low = high = None
    buys: list[tuple[Decimal, int]] = []
    sells: list[tuple[Decimal, int]] = []
    for order in orders:
        filled = fills.get(order.id, 0)
        if filled > 0:
            if order.side == "sell":
                low = order.price if low is None else max(low, order.price)
            else:
                high = order.price if high is None else min(high, order.price)
    if low is None and high is None:
        return None
    if low is None or high is None or low > high:
        raise ValueError("fills are not consistent with one price")
    for order in orders:
        left = order.lots - fills.get(order.id, 0)
        # Only a buy above low or a sell below high can ever press on a price in [low, high].
        if left <= 0 or (order.price <= low if order.side == "buy" else order.price >= high):
            continue
        if affordable is not None and (left := affordable(order, left)) <= 0:
            continue
        (buys if order.side == "buy" else sells).append((order.price, left))
    buys.sort()
    sells.sort()
    buy_limits = [limit for limit, _ in buys]
    sell_limits = [limit for limit, _ in sells]
    buy_above = list(itertools.accumulate((lots for _, lots in reversed(buys)), initial=0))[::-1]  # from index k on
    sell_below = list(itertools.accumulate((lots for _, lots in sells), initial=0))  # before index k

    def pressure(price: Decimal) -> int:
        return buy_above[bisect.bisect_right(buy_limits, price)] + sell_below[bisect.bisect_left(sell_limits, price)]

    # The pressure only changes at limit prices: evaluate each breakpoint and one point of each gap.
    points = sorted({low, high} | {limit for limit in itertools.chain(buy_limits, sell_limits) if low < limit < high})
    regions: list[tuple[Decimal, Decimal]] = [(p, p) for p in points]
    for left_point, right_point in zip(points, points[1:], strict=False):
        first, last = left_point + tick, right_point - tick
        if first <= last:
            regions.append((first, last))
    scored = [(pressure(lo), lo, hi) for lo, hi in regions]
    best = min(score for score, _, _ in scored)
    target = reference if reference is not None else (low + high) / 2
    snapped = (target / tick).quantize(Decimal(1), rounding=ROUND_HALF_DOWN) * tick
    candidates = [min(max(snapped, lo), hi) for score, lo, hi in scored if score == best]
    return min(candidates, key=lambda p: (abs(p - target), p))
