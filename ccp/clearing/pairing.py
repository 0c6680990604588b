"""Pairing a uniform-price auction's fills into trades (pure: no ORM).

An auction fills orders, not pairs: at one clearing price per contract each order gets a quantity,
and the buys' total equals the sells'. A trade names a buy order and a sell order, so each contract's
fills are paired: buys and sells each sorted by order id (time priority: ids grow with arrival), then
walked together, every step a trade of the smaller of the two remaining quantities. Each order's
trades sum to its fill; there are at most (buys + sells - 1) trades; the same fills give the same
trades in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple


class Fill(NamedTuple):
    order_id: int
    side: str  # "buy" or "sell"
    quantity: Decimal


class Pair(NamedTuple):
    buy_order_id: int
    sell_order_id: int
    quantity: Decimal


def fills_pair(fills: Iterable[Fill]) -> list[Pair]:
    """The trades of one contract's fills (see the module). Raises ValueError when the buys' total
    differs from the sells' or a quantity is not positive."""
    buys, sells = [], []
    for fill in fills:
        if fill.quantity <= 0:
            raise ValueError(f"fill of order {fill.order_id} is not positive: {fill.quantity}")
        (buys if fill.side == "buy" else sells).append(fill)
    if sum(f.quantity for f in buys) != sum(f.quantity for f in sells):
        raise ValueError("the buys' fills and the sells' fills differ")
    buys.sort(key=lambda f: f.order_id)
    sells.sort(key=lambda f: f.order_id)
    pairs: list[Pair] = []
    i = j = 0
    buy_left = buys[0].quantity if buys else Decimal(0)
    sell_left = sells[0].quantity if sells else Decimal(0)
    while i < len(buys) and j < len(sells):
        quantity = min(buy_left, sell_left)
        pairs.append(Pair(buys[i].order_id, sells[j].order_id, quantity))
        buy_left -= quantity
        sell_left -= quantity
        if not buy_left:
            i += 1
            buy_left = buys[i].quantity if i < len(buys) else Decimal(0)
        if not sell_left:
            j += 1
            sell_left = sells[j].quantity if j < len(sells) else Decimal(0)
    return pairs
