"""Netting at order entry: an auction order holds what it adds to its portfolio's worst case given the
client's positions (ccp.orders.rules.order_value_netted). A call spread, a covered call and a closing
order are each accepted with only the netted collateral, and refused with one unit less. Positions are
opened through real auctions on the default call (strike 100000, bounds [50000, 150000])."""

from decimal import Decimal as D

import pytest

from ccp.orders.services import order_cancel
from ccp.system.invariants import invariants_check
from tests.factories import ClientFactory, ContractFactory, FundLockFactory, PairFactory
from tests.matching.netting import available_of, available_set, place, position_open

pytestmark = pytest.mark.django_db

UNIT = D("0.000000000000000001")  # the smallest amount a fund lock holds


@pytest.fixture
def series():
    """Three contracts of one portfolio (pair, expiry): the 100000 and 110000 calls and the future."""
    pair = PairFactory()
    return {"C100": ContractFactory(pair=pair), "C110": ContractFactory(pair=pair, strike_px=D("110000")),
            "F": ContractFactory(pair=pair, kind="future", strike_px=None)}


@pytest.fixture
def trader(series):
    client = ClientFactory()
    FundLockFactory(client=client, currency=series["C100"].collateral, fundlock=D("1000000"))
    return client


# (the position opened: contract, signed quantity, price), (the order: contract, side, price, quantity),
# its netted hold, its stand-alone worst case
CASES = {
    # call spread: long the 110000 call, selling the 100000 call at 4000: at most 10000 lost, 4000 received
    "call spread": (("C110", "1", "1000"), ("C100", "sell", "4000", "1"), "6000", "46000"),
    # covered call: long one future, selling three calls at 5000: at S = 150000 the future pays 100000 and
    # the calls cost 150000, less the 15000 received
    "covered call": (("F", "1", "100000"), ("C100", "sell", "5000", "3"), "35000", "135000"),
    # closing a short call (lockup 50000) and going long one more: the premium 60000 less the 50000 freed
    "closing": (("C100", "-1", "20000"), ("C100", "buy", "30000", "2"), "10000", "60000"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_accepted_with_only_the_netted_collateral_and_refused_with_one_unit_less(series, trader, case):
    (held, quantity, opened_at), (name, side, price, size), hold, standalone = CASES[case]
    currency = series["C100"].collateral
    position_open(trader, series[held], quantity, opened_at)

    available_set(trader, currency, D(hold) - UNIT)
    refused = place(trader, series[name], side, price, size)
    assert (refused.state, refused.reject_reason) == ("rejected", "insufficient_collateral")

    available_set(trader, currency, hold)
    order = place(trader, series[name], side, price, size)
    assert (order.state, order.order_value) == ("accepted", D(hold))
    assert D(hold) < D(standalone)
    assert available_of(trader, currency) == 0
    assert invariants_check().ok, invariants_check().violations

    order_cancel(client=trader, order_id=order.pk, now=order.created_at)  # the stored value comes back
    assert available_of(trader, currency) == D(hold)
    assert invariants_check().ok


@pytest.mark.parametrize(("opened", "order"), [
    (("C100", "1", "1000"), ("C110", "sell", "3000", "1")),  # a call spread that can never lose
    (("F", "1", "100000"), ("C100", "sell", "5000", "2")),  # a future covering two calls
    (("C100", "-1", "20000"), ("C100", "buy", "30000", "1")),  # buying back a short call
    (("F", "2", "100000"), ("F", "sell", "60000", "2")),  # selling a long future
])
def test_fully_netted_orders_are_accepted_with_nothing_available(series, trader, opened, order):
    held, quantity, opened_at = opened
    name, side, price, size = order
    position_open(trader, series[held], quantity, opened_at)
    available_set(trader, series["C100"].collateral, 0)

    placed = place(trader, series[name], side, price, size)

    assert (placed.state, placed.order_value) == ("accepted", 0)


def test_without_the_position_the_same_order_holds_its_stand_alone_worst_case(series, trader):
    available_set(trader, series["C100"].collateral, "46000")
    order = place(trader, series["C100"], "sell", "4000", "1")
    assert (order.state, order.order_value) == ("accepted", D("46000"))


def test_a_position_in_another_expiry_does_not_net(series, trader):
    from datetime import timedelta
    other = ContractFactory(pair=series["C100"].pair, strike_px=D("110000"),
                            expiry_date=series["C100"].expiry_date + timedelta(days=7))
    position_open(trader, other, "1", "1000")
    available_set(trader, series["C100"].collateral, "6000")
    order = place(trader, series["C100"], "sell", "4000", "1")
    assert (order.state, order.reject_reason) == ("rejected", "insufficient_collateral")
