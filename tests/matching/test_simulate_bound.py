"""The simulator's collateral-bound traders (``ccp_simulate --bound-share``), pure: which traders are
bound, and the orders they quote: where they hold a position, its reducing side for one or two times
its size (netted at entry: several together ask for more than they hold, so the auction's budget
binds); elsewhere a sale of several lots."""

import random
from decimal import Decimal as D

from ccp.system.management.commands.ccp_simulate import BOUND_LOTS, bound_order, bound_traders

CALL = {"symbol": "BTC-C", "lot_size": D("0.01")}


def test_the_first_share_of_the_traders_is_bound():
    assert bound_traders(6, 0.0) == set()
    assert bound_traders(10, 0.3) == {0, 1, 2}
    assert bound_traders(6, 1.0) == set(range(6))
    assert bound_traders(3, 2.0) == {0, 1, 2}


def test_a_bound_trader_reduces_its_positions_and_sells_where_it_has_none():
    rng = random.Random(3)
    longs = {bound_order(CALL, D("0.4"), rng) for _ in range(40)}
    assert longs == {("sell", D("0.4")), ("sell", D("0.8"))}
    shorts = {bound_order(CALL, D("-0.3"), rng) for _ in range(40)}
    assert shorts == {("buy", D("0.3")), ("buy", D("0.6"))}
    side, quantity = bound_order(CALL, D(0), rng)
    assert side == "sell" and BOUND_LOTS[0] * D("0.01") <= quantity <= BOUND_LOTS[1] * D("0.01")
