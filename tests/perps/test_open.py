"""POST /api/v1/positions: opening an isolated position with a margin, a leverage and a slippage guard, then
seeing it with its margin and liquidation price in GET /api/v1/positions."""

from decimal import Decimal as D

import pytest

from ccp.orders.models import Order
from ccp.perps.services import perpetual_marks_update
from ccp.risk.apis import _opened
from tests.book.test_venue import match, send, trader
from tests.perps.test_listing import quote
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(perp, now, time_machine):  # noqa: F811 - the fixture
    """Asks of 0.05 at 50,010 and 0.1 at 50,020 from a maker; the mark at 50,000."""
    time_machine.move_to(now)
    maker = trader(perp, "100000")
    send(maker, perp, "sell", "50010", "0.05", leverage=D(5), margin_mode="cross")
    send(maker, perp, "sell", "50020", "0.1", leverage=D(5), margin_mode="cross")
    match(perp)
    quote(perp.pair, "binance", "50000", now)
    perpetual_marks_update(now=now)
    return perp


def test_open_a_long_then_see_it_with_its_liquidation_price(book, api_as):
    alice = trader(book, "10000")
    api = api_as(alice)
    body = {"contract": book.symbol, "side": "long", "margin": "1000", "leverage": "10", "slippage_bps": 50,
            "client_order_id": "open-1"}
    answer = api.post("/api/v1/positions", body, format="json")
    assert answer.status_code == 202
    order = answer.json()["order"]
    assert (order["kind"], order["time_in_force"], order["price"], order["quantity"]) == ("market", "ioc", "50250",
                                                                                          "0.2")
    assert api.post("/api/v1/positions", body, format="json").status_code == 200  # the same open again
    match(book)
    [mine] = api.get("/api/v1/positions").json()["results"]
    # 0.15 filled (the book's depth within 50,250), entry 50,016.67, margin 7,502.5 / 10 = 750.25:
    # (7,502.5 - 750.25) / (0.15 x (1 - 0.005 - 0.002)) = 45,332.33 -> 45,332 on the 0.5 grid (as the estimate)
    assert (mine["quantity"], mine["margin_mode"], mine["margin"], mine["liquidation_price"]) == (
        "0.15", "isolated", "750.25", "45332")
    opened = _opened(alice, Order.objects.get(client=alice).pk)  # the answer after the wait
    # an immediate-or-cancel order: its 0.05 left over is cancelled
    assert (opened["order"]["state"], opened["order"]["filled_quantity"], opened["position"]["quantity"]) == (
        "cancelled", "0.15", "0.15")


def test_nothing_fillable_within_the_slippage(book, api_as):
    answer = api_as(trader(book, "10000")).post("/api/v1/positions", {
        "contract": book.symbol, "side": "short", "margin": "1000", "leverage": "10"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (409, "nothing_fillable")
    assert not Order.objects.filter(kind="market").exists()
