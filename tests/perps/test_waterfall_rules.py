"""The waterfall's pure rules (``ccp.perps.liquidation``): the liquidation fee and how much the insurance fund
takes over, against hand-worked numbers."""

from decimal import Decimal as D

import pytest

from ccp.perps.liquidation import liquidation_fee, takeover_size


@pytest.mark.parametrize("quantity, price, equity, fee", [
    (D("0.046"), D(45400), D(30), D("4.1768")),  # 0.002 x 0.046 x 45,400
    (D("-0.046"), D(45400), None, D("4.1768")),  # no cap: a cross position
    (D("0.09"), D("45004.5"), D("0.004"), D("0.004")),  # capped at the equity left
    (D("0.1"), D(45000), D(-3), D(0)),  # never below zero
    (D("0.001"), D("0.5"), D(10), D("0.000001")),
    (D("1e-17"), D("1"), D(10), D("1e-18")),  # rounded up to storage precision: 2e-20 -> 1e-18
])
def test_the_fee_is_the_rate_of_the_notional_capped_at_the_equity_left(quantity, price, equity, fee):
    assert liquidation_fee(quantity=quantity, price=price, fee_rate=D("0.002"), equity=equity) == fee


@pytest.mark.parametrize("available, quantity, mark, taken", [
    (D(10000), D("0.1"), D(44000), D("0.1")),  # 0.1 x (450 + 1,000) = 145: all of it
    (D(50), D("0.1"), D(44000), D("0.034")),  # 50 / 1,450 = 0.0344...: whole lots
    (D(50), D("-0.1"), D(46000), D("0.034")),  # a short taken over: its loss is M - B
    (D("49.3"), D("0.1"), D(44000), D("0.034")),  # exactly enough
    (D("49.29"), D("0.1"), D(44000), D("0.033")),
    (D(45), D("0.1"), D(46000), D("0.1")),  # the mark the fund's way: the margin only, 0.1 x 450
    (D(0), D("0.1"), D(44000), D(0)),
    (D(-5), D("0.1"), D(44000), D(0)),
])
def test_the_fund_takes_what_its_available_covers_margin_and_loss_at_the_mark(available, quantity, mark, taken):
    assert takeover_size(available=available, quantity=quantity, bankruptcy_px=D(45000), mark=mark,
                         leverage=D(100), lot=D("0.001")) == taken


def test_the_margin_s_rounding_up_never_takes_a_lot_it_would_not_cover():
    # 3 lots of 1 at 1 / 3x: the margin 1 exactly, but 1 / 3 per lot is 0.333...: 0.999...9 would pass.
    assert takeover_size(available=D(1), quantity=D(3), bankruptcy_px=D(1), mark=D(1), leverage=D(3),
                         lot=D(1)) == D(3)
    assert takeover_size(available=D("0.999999999999999999"), quantity=D(3), bankruptcy_px=D(1), mark=D(1),
                         leverage=D(3), lot=D(1)) == D(2)
