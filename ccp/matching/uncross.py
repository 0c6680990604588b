"""Price-time priority uncross of one contract and the uniform clearing-price rule. Pure, exact.

Quantities are whole lots (ints); prices are Decimals on the contract's tick grid.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
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


def uncross(orders: Iterable[LotOrder]) -> dict[str, int]:
    """Fill the highest buys against the lowest sells while they cross, in price-time priority.

    The volume is the largest at which the marginal buy still pays at least the marginal sell,
    which maximises traded surplus without collateral limits. Returns filled lots per order id.
    """
    orders = list(orders)
    # priority_key's order, by C-level keys: sorts are stable, also reversed (higher buys first).
    buys = sorted(sorted((o for o in orders if o.side == "buy"), key=_TIME), key=_PRICE, reverse=True)
    sells = sorted((o for o in orders if o.side == "sell"), key=_PRICE_TIME)
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
