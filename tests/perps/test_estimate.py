"""POST /api/v1/positions/estimate: what opening an isolated position would do against the book now."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.orders.models import Order
from ccp.perps.services import perpetual_marks_update
from tests.factories import ClientFactory, ContractFactory
from tests.perps.test_listing import list_btc, quote

pytestmark = pytest.mark.django_db


@pytest.fixture
def perp(now):
    """BTC-USDC-PERP marked at 50,000 (tick 0.5, lot 0.001) with asks of 0.05 at 50,010 and 0.1 at 50,020."""
    contract = list_btc(now)
    maker = ClientFactory()
    for price, quantity in (("50010", "0.05"), ("50020", "0.1")):
        Order.objects.create(client=maker, contract=contract, client_order_id=f"ask-{price}", side="sell",
                             price=D(price), quantity=D(quantity), state="accepted", created_at=now, updated_at=now)
    quote(contract.pair, "binance", "50000", now)
    perpetual_marks_update(now=now)  # a one-sided book: the basis stays 0
    return contract


def estimate(api_as, **terms):
    body = {"contract": "BTC-USDC-PERP", "side": "long", "margin": "1000", "leverage": "10", "slippage_bps": 50,
            **terms}
    return api_as(ClientFactory()).post("/api/v1/positions/estimate", body, format="json")


def test_a_long_sweeps_the_asks_within_its_slippage(perp, api_as, time_machine, now):
    time_machine.move_to(now)
    answer = estimate(api_as)
    assert answer.status_code == 200
    body = answer.json()
    # 1,000 x 10 / 50,000 = 0.2 asked; the book holds 0.15 within 50,250 (50 bps above the mark).
    assert (body["mark_price"], body["protection_price"], body["quantity"], body["filled_quantity"]) == (
        "50000", "50250", "0.2", "0.15")
    assert body["entry_price"] == "50016.666666666666666667"  # (0.05 x 50,010 + 0.1 x 50,020) / 0.15
    assert body["margin"] == "750.25"  # 7,502.5 / 10
    # (7,502.5 - 750.25) / (0.15 x (1 - 0.005 - 0.002)) = 45,332.326... -> 45,332 on the 0.5 grid
    assert (body["liquidation_price"], body["bankruptcy_price"], body["maintenance_rate"]) == (
        "45332", "45015", "0.005")  # bankruptcy: 50,016.666... - 750.25 / 0.15 = 45,015


def test_a_tight_slippage_fills_less_and_an_empty_side_fills_nothing(perp, api_as, time_machine, now):
    time_machine.move_to(now)
    assert estimate(api_as, slippage_bps=3).json()["filled_quantity"] == "0.05"  # up to 50,015 only
    short = estimate(api_as, side="short").json()
    assert (short["filled_quantity"], short["entry_price"], short["liquidation_price"]) == ("0", None, None)


@pytest.mark.parametrize("terms, status, code", [
    ({"leverage": "101"}, 400, "leverage_invalid"),
    ({"leverage": "0.5"}, 400, "leverage_invalid"),
    ({"margin": "12000", "leverage": "60"}, 400, "leverage_invalid"),  # 14.4 BTC: the 50x tier
    ({"margin": "0"}, 400, "margin_invalid"),
    ({"margin": "0.1", "leverage": "1"}, 400, "margin_too_small"),
    ({"contract": "ETH-USDC-PERP"}, 404, "unknown_contract"),
])
def test_refusals(perp, api_as, time_machine, now, terms, status, code):
    time_machine.move_to(now)
    answer = estimate(api_as, **terms)
    assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_a_dated_contract_is_no_perpetual(perp, api_as, time_machine, now):
    time_machine.move_to(now)
    future = ContractFactory(kind="future", strike_px=None)
    answer = estimate(api_as, contract=future.symbol)
    assert (answer.status_code, answer.json()["code"]) == (400, "contract_not_perpetual")


def test_nothing_opens_on_a_stale_index(perp, api_as, time_machine, now):
    time_machine.move_to(now + timedelta(minutes=10))
    answer = estimate(api_as)
    assert (answer.status_code, answer.json()["code"]) == (409, "index_stale")


def test_it_needs_a_token(perp):
    assert APIClient().post("/api/v1/positions/estimate", {}, format="json").status_code == 401
