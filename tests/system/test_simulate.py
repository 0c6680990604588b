"""The simulator's quoting rules, pure: quotes centre on the mark price (futures at the mark, options at
the mark plus a small time value), stay on the tick grid and in range, and a trader's stale and excess
orders are the ones it cancels, so its book stays bounded."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from ccp.system.management.commands.ccp_simulate import (
    MAX_RESTING,
    STALE_FRACTION,
    Resting,
    fair_value,
    orders_to_cancel,
    quote_price,
)

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def contract(kind="future", **fields):
    base = {"symbol": f"BTC-{kind}", "underlying": "BTC/USDC", "kind": kind, "strike_px": None,
            "floor_px": D(50000), "cap_px": D(150000), "tick_size": D(1), "lot_size": D("0.01"),
            "price_min": D(50001), "price_max": D(149999), "index_price": D(98000), "mark_price": D(98000),
            "reference_price": D(120000), "expires_at": (NOW + timedelta(days=365)).isoformat()}
    return {**base, **fields}


def test_a_future_is_quoted_at_its_mark_not_at_spot_minus_floor():
    assert fair_value(contract(), now=NOW) == D(98000)
    # no fresh index: the last clearing price, else the notional spot
    assert fair_value(contract(index_price=None, mark_price=None), now=NOW) == D(120000)
    assert fair_value(contract(index_price=None, mark_price=None, reference_price=None), now=NOW) == D(100000)


def test_an_option_is_its_mark_plus_a_small_time_value_that_ends_at_expiry():
    call = contract("call", strike_px=D(90000), mark_price=D(8000), price_min=D(1), price_max=D(59999))
    assert fair_value(call, now=NOW) == D(8000) + D(98000) * D("0.02")  # a year ahead
    assert fair_value({**call, "expires_at": NOW.isoformat()}, now=NOW) == D(8000)
    put = contract("put", strike_px=D(90000), mark_price=None, index_price=None)  # no index: notional spot
    assert D(0) < fair_value(put, now=NOW) < D(100000) * D("0.021")


def test_quotes_are_on_the_grid_in_range_and_buy_below_sell_above_on_average():
    rng = random.Random(7)
    future = contract()
    buys = [quote_price(future, D(98000), "buy", rng) for _ in range(300)]
    sells = [quote_price(future, D(98000), "sell", rng) for _ in range(300)]
    assert all(p == p.to_integral_value() and D(50001) <= p <= D(149999) for p in buys + sells)
    assert sum(buys) / len(buys) < D(98000) < sum(sells) / len(sells)
    assert all(abs(p - D(98000)) < STALE_FRACTION * D(98000) for p in buys + sells)
    assert quote_price(future, D(160000), "sell", rng) == D(149999)  # clamped into the range


def test_stale_orders_and_the_oldest_beyond_the_cap_are_cancelled():
    fair = {"A": D(100), "B": D(1000)}
    stale = [Resting(1, "A", D(120)), Resting(2, "GONE", D(5)), Resting(3, "B", D(940))]
    fresh = [Resting(10 + n, "A" if n % 2 else "B", D(101) if n % 2 else D(1001)) for n in range(MAX_RESTING + 3)]
    going = orders_to_cancel(stale + fresh, fair)
    assert going == [1, 2, 3, 10, 11, 12, 13]  # the stale ones, then the oldest until one place is free
    assert len(stale + fresh) - len(going) == MAX_RESTING - 1
    assert orders_to_cancel(fresh[:5], fair) == []
