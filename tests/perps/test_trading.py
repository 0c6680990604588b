"""Trading a perpetual on the continuous book (``CCP_PERPETUALS_OPEN``): orders carry a leverage and a margin
mode, hold their initial margin, and a fill books cash relative to the reference price, the position's
margin and the fund lock's margin value (``ccp.perps.booking``), every invariant holding."""

from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.book.services import position_close
from ccp.orders.models import Order
from ccp.perps.models import Perpetual
from ccp.perps.services import perpetual_marks_update
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, state, trader
from tests.conftest import NOW
from tests.factories import ContractFactory
from tests.perps.test_listing import list_btc, quote

pytestmark = pytest.mark.django_db


@pytest.fixture
def perp(settings, now):
    settings.CCP_PERPETUALS_OPEN = True
    return list_btc(now)


def position(client, contract):
    p = Position.objects.get(client=client, contract=contract)
    return p.quantity, p.cost, p.entry_price, p.margin_mode, p.margin, p.realised_pnl


def balance(client, contract):
    f = FundLock.objects.get(client=client, currency=contract.collateral)
    return f.margin_value, f.available


def test_open_reduce_and_close_with_margin(perp):
    alice, bob, carol = trader(perp, "10000"), trader(perp, "10000"), trader(perp, "10000")
    sell = send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    match(perp)
    assert (state(sell)[0], Order.objects.get(pk=sell.pk).order_value) == ("accepted", D(1000))  # 5,000 / 5
    buy = send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    assert state(buy)[:2] == ("filled", D("0.1"))
    assert Perpetual.objects.get(contract=perp).settle_px == D(50000)  # the first trade sets R
    assert position(alice, perp) == (D("0.1"), D(5000), D(50000), "isolated", D(500), D(0))
    assert position(bob, perp) == (D("-0.1"), D(-5000), D(50000), "cross", D(1000), D(0))
    assert balance(alice, perp) == (D(500), D(9500)) and balance(bob, perp) == (D(1000), D(9000))

    # Alice sells 0.04 at 51,000 to Carol (cross, 2x): 40 realised, 200 of margin back; Carol pays 40 in cash
    # relative to R and holds 1,020 - 40.
    send(carol, perp, "buy", "51000", "0.04", leverage=D(2), margin_mode="cross")
    send(alice, perp, "sell", "51000", "0.04", leverage=D(10), margin_mode="isolated")
    match(perp)
    assert position(alice, perp) == (D("0.06"), D(3000), D(50000), "isolated", D(300), D(40))
    assert balance(alice, perp) == (D(300), D(9740))
    assert position(carol, perp)[:2] == (D("0.04"), D(2040)) and balance(carol, perp) == (D(980), D(8980))

    # Alice closes the rest at 49,000 against Bob's bid: 60 lost, her 300 back, her margin mode cleared.
    send(bob, perp, "buy", "49000", "0.06", leverage=D(5), margin_mode="cross")
    match(perp)
    close, _ = position_close(client=alice, contract=perp, price=D(48000), client_order_id="close", now=NOW)
    assert (close.reduce_only, close.order_value, close.leverage, close.margin_mode) == (True, 0, D(1), "isolated")
    match(perp)
    assert position(alice, perp) == (D(0), D(0), None, "", D(0), D(-20))
    assert balance(alice, perp) == (D(0), D(10000) - D(20))

    cash = {movement.client_id: movement.amount for movement in CashMovement.objects.filter(client=alice)}
    assert sum(CashMovement.objects.values_list("amount", flat=True)) == 0
    assert cash and sum(p.quantity for p in Position.objects.filter(contract=perp)) == 0
    report = invariants_check()
    assert report.ok, report.violations


def test_orders_on_a_perpetual_need_its_margin_terms(perp, api_as):
    client = trader(perp, "10000")

    ids = iter(range(100))

    def enter(**terms):
        body = {"client_order_id": f"o{next(ids)}", "contract": perp.symbol, "side": "buy",
                "price": "50000", "quantity": "0.01", **terms}
        answer = api_as(client).post("/api/v1/orders", body, format="json")
        return answer.status_code, answer.json().get("code")

    assert enter() == (400, "leverage_invalid")
    assert enter(leverage="101") == (400, "leverage_invalid")
    assert enter(leverage="10", margin_mode="portfolio")[0] == 400
    assert enter(leverage="10")[0] == 202  # margin mode cross by default
    assert Order.objects.get(client=client).margin_mode == "cross"
    future = ContractFactory(kind="future", strike_px=None, trading_mode="continuous")
    answer = api_as(client).post("/api/v1/orders", {"client_order_id": "f1", "contract": future.symbol,
                                                    "side": "buy", "price": "100000", "quantity": "0.01",
                                                    "leverage": "2"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (400, "margin_terms_not_perpetual")


def test_closed_when_operators_close_them(settings, now, api_as):
    settings.CCP_PERPETUALS_OPEN = False
    contract = list_btc(now)
    answer = api_as(trader(contract, "10000")).post("/api/v1/orders", {
        "client_order_id": "p1", "contract": contract.symbol, "side": "buy", "price": "50000", "quantity": "0.01",
        "leverage": "10"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (400, "contract_not_tradeable")


def test_a_perpetual_position_is_marked_with_the_perpetual_s_own_mark(perp, api_as, now, time_machine):
    time_machine.move_to(now)
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    quote(perp.pair, "binance", "50500", now)
    perpetual_marks_update(now=now)  # an empty book: the mark is the index
    [mine] = api_as(alice).get("/api/v1/positions").json()["results"]
    assert (mine["contract"], mine["quantity"], mine["entry_price"], mine["mark_price"], mine["unrealised_pnl"]) == (
        perp.symbol, "0.1", "50000", "50500", "50")
