"""Perpetual margin arithmetic against hand-worked numbers (``ccp.perps.margin``)."""

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccp.perps.margin import (
    Tier,
    bankruptcy_price,
    basis_damped,
    equity,
    funding_payments,
    funding_rate,
    initial_margin,
    liquidatable,
    liquidation_price,
    maintenance_margin,
    mark_price,
    premium,
    tier_of,
    tiers_check,
)

TICK = D("0.01")
FEE = D("0.0005")
TIERS = [Tier(D(10), D("0.005"), D(100)), Tier(D(100), D("0.01"), D(50)), Tier(None, D("0.025"), D(20))]


def test_isolated_long_at_10x():
    # 1 BTC at 50,000 with 10x: margin 5,000; (50,000 - 5,000) / (1 - 0.005 - 0.0005) = 45,248.868...
    # -> down: the first mark that liquidates.
    margin = initial_margin(quantity=D(1), price=D(50000), leverage=D(10))
    assert margin == D(5000)
    assert liquidation_price(quantity=D(1), entry_px=D(50000), margin=margin, rate=D("0.005"), fee_rate=FEE,
                             tick=TICK) == D("45248.86")
    assert bankruptcy_price(quantity=D(1), entry_px=D(50000), margin=margin, tick=TICK) == D(45000)


def test_isolated_short_at_10x():
    # 2 ETH short at 3,000 with 10x: margin 600; (6,000 + 600) / (2 * (1 + 0.01 + 0.0005)) = 3,265.7100... -> up.
    margin = initial_margin(quantity=D(-2), price=D(3000), leverage=D(10))
    assert margin == D(600)
    assert liquidation_price(quantity=D(-2), entry_px=D(3000), margin=margin, rate=D("0.01"), fee_rate=FEE,
                             tick=TICK) == D("3265.72")
    assert bankruptcy_price(quantity=D(-2), entry_px=D(3000), margin=margin, tick=TICK) == D(3300)


def test_cross_long_counts_the_other_positions():
    # Collateral 10,000; long 1 BTC at 50,000 and short 10 ETH at 3,000 marked 2,900: the ETH leg adds its
    # PnL (+1,000) less its maintenance plus closing fee ((0.01 + 0.0005) * 10 * 2,900 = 304.5): m = 10,695.5.
    alone = liquidation_price(quantity=D(1), entry_px=D(50000), margin=D(10000), rate=D("0.005"), fee_rate=FEE,
                              tick=TICK)
    assert alone == D("40221.21")  # 40,000 / 0.9945 = 40,221.2166... -> down
    eth_pnl = D(-10) * (D(2900) - D(3000))
    eth_requirement = (D("0.01") + FEE) * 10 * D(2900)
    margin = D(10000) + eth_pnl - eth_requirement
    assert margin == D("10695.5")
    assert liquidation_price(quantity=D(1), entry_px=D(50000), margin=margin, rate=D("0.005"), fee_rate=FEE,
                             tick=TICK) == D("39521.87")  # 39,304.5 / 0.9945 = 39,521.870... -> down


def test_cross_short():
    # Collateral 2,000 behind short 1 BTC at 50,000: (50,000 + 2,000) / 1.0055 = 51,715.5644... -> up.
    assert liquidation_price(quantity=D(-1), entry_px=D(50000), margin=D(2000), rate=D("0.005"), fee_rate=FEE,
                             tick=TICK) == D("51715.57")


def test_one_x_long_never_liquidates():
    margin = initial_margin(quantity=D(3), price=D(100), leverage=D(1))
    assert liquidation_price(quantity=D(3), entry_px=D(100), margin=margin, rate=D("0.025"), fee_rate=FEE,
                             tick=TICK) is None
    assert bankruptcy_price(quantity=D(3), entry_px=D(100), margin=margin, tick=TICK) == 0


@given(entry=st.integers(1, 10**7), lots=st.integers(1, 10**4), tier=st.sampled_from(TIERS), long=st.booleans(),
       data=st.data())
def test_the_liquidation_price_is_the_first_tick_that_liquidates(entry, lots, tier, long, data):
    leverage = data.draw(st.integers(1, int(tier.max_leverage)))
    entry_px, quantity = D(entry) * TICK, D(lots) / 10 * (1 if long else -1)
    margin = initial_margin(quantity=quantity, price=entry_px, leverage=D(leverage))
    price = liquidation_price(quantity=quantity, entry_px=entry_px, margin=margin, rate=tier.rate, fee_rate=FEE,
                              tick=TICK)

    def liquidates(mark):
        return liquidatable(quantity=quantity, entry_px=entry_px, margin=margin, mark=mark, rate=tier.rate,
                            fee_rate=FEE)

    if price is None:  # a long that no positive price liquidates
        assert long and not liquidates(TICK)
        return
    assert liquidates(price)
    assert not liquidates(price + TICK if long else price - TICK)  # the first mark that does
    assert not liquidates(entry_px)  # a fresh position is above maintenance at its own entry


def test_maintenance_by_size_tier():
    tiers_check(TIERS, fee_rate=FEE)
    assert tier_of(TIERS, D(-10)).rate == D("0.005")
    assert tier_of(TIERS, D("10.1")).rate == D("0.01")
    assert tier_of(TIERS, D(1000)).rate == D("0.025")
    assert maintenance_margin(tiers=TIERS, quantity=D(-20), price=D(100)) == D(20)
    with pytest.raises(ValueError):
        tiers_check([Tier(D(10), D("0.01"), D(50))], fee_rate=FEE)  # no unbounded last tier
    with pytest.raises(ValueError):
        tiers_check([Tier(D(10), D("0.02"), D(40)), Tier(None, D("0.01"), D(40))], fee_rate=FEE)  # rate falls
    with pytest.raises(ValueError):
        tiers_check([Tier(None, D("0.01"), D(100))], fee_rate=FEE)  # 1% + 0.05% at 100x: liquidatable at open
    with pytest.raises(ValueError):
        tiers_check([Tier(D(10), D("0.01"), D(20)), Tier(None, D("0.01"), D(40))], fee_rate=FEE)  # leverage grows
    with pytest.raises(ValueError):
        Tier(None, D("0.02"), D(100))  # 100x needs more than a 2% maintenance rate can leave


def test_equity_is_margin_plus_pnl_from_entry():
    assert equity(quantity=D(-2), entry_px=D(3000), margin=D(600), mark=D(3100)) == D(400)


def test_mark_follows_the_book_damped_and_bounded():
    basis = basis_damped(previous=D(0), index=D(100), best_bid=D(101), best_ask=D(103), alpha=D("0.2"),
                         bound=D("0.005"))
    assert basis == D("0.4")  # 0.2 of the way to the mid's basis of 2
    assert mark_price(index=D(100), basis=basis, tick=TICK) == D("100.40")
    basis = basis_damped(previous=basis, index=D(100), best_bid=D(101), best_ask=D(103), alpha=D("0.2"),
                         bound=D("0.005"))
    assert basis == D("0.5")  # 0.72 bounded to 0.5% of the index
    basis = basis_damped(previous=basis, index=D(100), best_bid=D(101), best_ask=None, alpha=D("0.2"),
                         bound=D("0.005"))
    assert basis == D("0.4")  # a one-sided book pulls towards the index


def test_funding_follows_the_premium_and_sums_to_zero():
    premiums = [premium(mark=D("100.4"), index=D(100)), premium(mark=D("100.2"), index=D(100))]
    assert premiums == [D("0.004"), D("0.002")]
    assert funding_rate(premiums=premiums, cap=D("0.0075")) == D("0.003")
    assert funding_rate(premiums=premiums, cap=D("0.001")) == D("0.001")
    assert funding_rate(premiums=[D("-0.02")], cap=D("0.001")) == D("-0.001")
    payments, residue = funding_payments(positions={"a": D(2), "b": D(-1), "c": D(-1)}, mark=D(100),
                                         rate=D("0.003"))
    assert payments == {"a": D("-0.6"), "b": D("0.3"), "c": D("0.3")}  # longs pay shorts
    assert residue == 0
    payments, residue = funding_payments(positions={"a": D(2), "b": D(-2)}, mark=D(100), rate=D("-0.003"))
    assert payments == {"a": D("0.6"), "b": D("-0.6")}  # shorts pay longs


def test_funding_rounding_goes_to_the_clearing_house():
    q = D("1.000000000000000001")
    payments, residue = funding_payments(positions={"a": q, "b": -q}, mark=D("1.5"), rate=D("0.00000001"))
    assert payments == {"a": D("-0.000000015000000001"), "b": D("0.000000015")}
    assert residue == D("1E-18")
    assert sum(payments.values()) + residue == 0
