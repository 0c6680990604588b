"""What a trader does to an open perpetual position (``ccp.perps.positions``): close it whole or in part
(POST /positions/close), add or take out isolated margin (POST /positions/margin), set its take-profit and
stop-loss (POST /positions/tpsl); order entry refusing the other margin mode (margin_mode_mismatch); GET
/positions with the bankruptcy price, margin ratio and TP/SL orders."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.conf import settings

from ccp.accounts.models import FundLock
from ccp.money import money_str
from ccp.orders.models import Order
from ccp.perps.margin import Tier
from ccp.perps.models import Perpetual
from ccp.perps.positions import margin_removable, position_margin_adjust
from ccp.perps.selectors import isolated_liquidation_price, isolated_margin_ratio
from ccp.perps.services import perpetual_marks_update
from ccp.risk.models import Position
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, state, trader
from tests.perps.test_listing import quote
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(perp, now, time_machine):  # noqa: F811 - the fixture
    """Alice long 0.1 isolated at 50,010 with 10x (margin 500.01); a maker's bids of 0.2 at 49,990 and asks of
    0.1 at 50,010 left: the book's mid is the index, so the mark is 50,000."""
    time_machine.move_to(now)
    maker = trader(perp, "100000")
    send(maker, perp, "sell", "50010", "0.2", leverage=D(5), margin_mode="cross")
    send(maker, perp, "buy", "49990", "0.2", leverage=D(5), margin_mode="cross")
    alice = trader(perp, "10000")
    send(alice, perp, "buy", "50010", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    quote(perp.pair, "binance", "50000", now)
    perpetual_marks_update(now=now)
    assert Perpetual.objects.get(contract=perp).mark_px == D(50000)
    return alice


def held(client, contract):
    position = Position.objects.get(client=client, contract=contract)
    fund_lock = FundLock.objects.get(client=client, currency=contract.collateral)
    return position.quantity, position.margin, fund_lock.margin_value, fund_lock.available


def post(api, path, body):
    answer = api.post(f"/api/v1/positions/{path}", body, format="json")
    return answer.status_code, answer.json()


# Close ----------------------------------------------------------------------------------------------------


def test_close_part_then_the_rest(perp, alice, api_as):  # noqa: F811
    api = api_as(alice)
    body = {"contract": perp.symbol, "quantity": "0.04", "slippage_bps": 50, "client_order_id": "close-1"}
    status, answer = post(api, "close", body)
    assert status == 202
    order = answer["order"]
    # a sell protected at 50,000 x 0.995 = 49,750, reduce-only, the position's mode, leverage 1
    assert (order["side"], order["kind"], order["time_in_force"], order["price"], order["quantity"],
            order["reduce_only"]) == ("sell", "market", "ioc", "49750", "0.04", True)
    assert Order.objects.get(pk=order["id"]).margin_mode == "isolated"
    assert post(api, "close", body)[0] == 200  # the same close again
    assert post(api, "close", {**body, "quantity": "0.05"})[1]["code"] == "client_order_id_reused"
    match(perp)
    # 0.04 sold at 49,990: 0.04 x (49,990 - 50,010) = -0.8 realised; 0.04 / 0.1 of the margin back
    position = Position.objects.get(client=alice, contract=perp)
    assert (position.quantity, position.realised_pnl, position.margin) == (D("0.06"), D("-0.8"), D("300.06"))

    status, answer = post(api, "close", {"contract": perp.symbol, "client_order_id": "close-2"})
    assert (status, answer["order"]["quantity"]) == (202, "0.06")  # the whole position by default
    match(perp)
    assert held(alice, perp) == (0, 0, 0, D(10000) - D("2"))  # 0.1 x 20 lost, nothing held
    status, answer = post(api, "close", {"contract": perp.symbol, "client_order_id": "close-3"})
    assert (status, answer["code"]) == (409, "position_flat")
    report = invariants_check()
    assert report.ok, report.violations


@pytest.mark.parametrize(("quantity", "code"), [("0.0005", "quantity_invalid"), ("0.2", "quantity_invalid"),
                                                ("0", "quantity_invalid")])
def test_close_quantity_must_be_whole_lots_within_the_position(perp, alice, api_as, quantity, code):  # noqa: F811
    status, answer = post(api_as(alice), "close", {"contract": perp.symbol, "quantity": quantity})
    assert (status, answer["code"], answer["extra"]["max"]) == (400, code, "0.1")
    assert not Order.objects.filter(client=alice, reduce_only=True).exists()


def test_close_refused_without_a_fresh_index_or_within_the_slippage(perp, alice, api_as, now,  # noqa: F811
                                                                    time_machine):
    api = api_as(alice)
    status, answer = post(api, "close", {"contract": perp.symbol, "slippage_bps": 0})
    # the best bid, 49,990, is below the mark with no slippage
    assert (status, answer["code"], answer["extra"]["protection_price"]) == (409, "nothing_fillable", "50000")
    time_machine.move_to(now + settings.CCP_SPOT_STALE_AFTER + timedelta(seconds=1))
    assert post(api, "close", {"contract": perp.symbol})[1]["code"] == "index_stale"
    assert post(api_as(trader(perp)), "close", {"contract": perp.symbol})[1]["code"] == "position_flat"  # not yours


# Margin ---------------------------------------------------------------------------------------------------


def test_add_then_remove_margin_moves_available_and_the_liquidation_price(perp, alice, api_as):  # noqa: F811
    api = api_as(alice)
    _, margin, margin_value, available = held(alice, perp)
    assert margin == D("500.1")
    status, answer = post(api, "margin", {"contract": perp.symbol, "amount": "100"})
    assert status == 200
    assert held(alice, perp) == (D("0.1"), D("600.1"), margin_value + 100, available - 100)
    # (0.1 x 50,010 - 600.1) / (0.1 x (1 - 0.005 - 0.002)) = 44,319.23 -> 44,319 on the 0.5 grid (was 45,326)
    assert (answer["position"]["margin"], answer["position"]["liquidation_price"], answer["available"]) == (
        "600.1", "44319", money_str(available - 100))
    assert isolated_liquidation_price(perpetual=perp.perpetual, quantity=D("0.1"), entry_px=D(50010),
                                      margin=D("500.1")) == D(45326)

    # Taking out: keep the initial margin at the mark at 100x (0.1 x 50,000 / 100 = 50) plus the unrealised
    # loss (0.1 x (50,000 - 50,010) = -1): at most 600.1 - 51 = 549.1
    status, answer = post(api, "margin", {"contract": perp.symbol, "amount": "-549.2"})
    assert (status, answer["code"], answer["extra"]["max"]) == (409, "margin_remove_too_large", "549.1")
    assert held(alice, perp)[1] == D("600.1")
    status, answer = post(api, "margin", {"contract": perp.symbol, "amount": "-549.1"})
    assert (status, answer["position"]["margin"]) == (200, "51")
    assert held(alice, perp) == (D("0.1"), D(51), margin_value - D("449.1"), available + D("449.1"))
    report = invariants_check()
    assert report.ok, report.violations


def test_margin_refusals(perp, alice, api_as, now, time_machine):  # noqa: F811
    api = api_as(alice)
    available = held(alice, perp)[3]
    assert post(api, "margin", {"contract": perp.symbol, "amount": "0"})[1]["code"] == "amount_invalid"
    status, answer = post(api, "margin", {"contract": perp.symbol, "amount": str(available + D("0.01"))})
    assert (status, answer["code"]) == (409, "insufficient_collateral")
    assert answer["extra"]["available"] == money_str(available)
    assert post(api, "margin", {"contract": perp.symbol, "amount": "1e2"})[1]["code"] == "invalid_number"
    # another trader's request touches only its own (no) position
    assert post(api_as(trader(perp)), "margin", {"contract": perp.symbol, "amount": "10"})[1]["code"] == (
        "position_flat")
    # the maker's position is cross: its margin is the account's
    maker = Order.objects.filter(contract=perp, side="sell").exclude(client=alice).first().client
    status, answer = post(api_as(maker), "margin", {"contract": perp.symbol, "amount": "10"})
    assert (status, answer["code"]) == (409, "position_not_isolated")
    time_machine.move_to(now + settings.CCP_SPOT_STALE_AFTER + timedelta(seconds=1))
    assert post(api, "margin", {"contract": perp.symbol, "amount": "-1"})[1]["code"] == "index_stale"
    assert post(api, "margin", {"contract": perp.symbol, "amount": "1"})[0] == 200  # adding needs no mark
    assert held(alice, perp)[1] == D("501.1")


def test_the_balance_event_goes_out_after_the_commit(perp, alice, now, monkeypatch,  # noqa: F811
                                                     django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("ccp.streams._send", sent.extend)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        adjusted = position_margin_adjust(client=alice, contract=perp, amount=D(-100), now=now)
    assert sent == [] and callbacks
    for callback in callbacks:
        callback()
    [event] = [message["event"] for _, message in sent if message["event"]["type"] == "balance"]
    _, margin, margin_value, available = held(alice, perp)
    assert (adjusted.position.margin, adjusted.available) == (margin, available) == (D("400.1"), D("9599.9"))
    assert (event["balance"]["margin"], event["balance"]["available"]) == (money_str(margin_value), "9599.9")


def test_margin_removable_keeps_the_initial_margin_at_the_highest_leverage():
    tier = Tier(None, D("0.01"), D(50))
    # a short of 2 entered at 100 (cost -200) at mark 90: 20 of profit is not given out; 2 x 90 / 50 = 3.6 kept
    assert margin_removable(quantity=D(-2), cost=D(-200), margin=D(10), mark=D(90), tier=tier) == D("6.4")
    # at mark 104 an unrealised loss of 8: 10 - 8 - 4.16 < 0, nothing
    assert margin_removable(quantity=D(-2), cost=D(-200), margin=D(10), mark=D(104), tier=tier) == 0


# Take-profit and stop-loss --------------------------------------------------------------------------------


def test_tpsl_replaces_the_earlier_and_the_stop_closes_the_position(perp, alice, api_as, now):  # noqa: F811
    api = api_as(alice)
    status, answer = post(api, "tpsl", {"contract": perp.symbol, "take_profit": "52000", "stop_loss": "49000"})
    assert status == 202 and answer["cancelled"] == []
    tp, sl = answer["take_profit"], answer["stop_loss"]
    assert (tp["side"], tp["trigger"], tp["trigger_price"], tp["price"], tp["quantity"], tp["reduce_only"]) == (
        "sell", "take_profit", "52000", "49400", "0.1", True)  # 52,000 x 0.95
    assert (sl["trigger"], sl["trigger_price"], sl["price"], sl["trigger_source"]) == ("stop", "49000", "46550",
                                                                                      "mark")
    status, answer = post(api, "tpsl", {"contract": perp.symbol, "take_profit": "53000", "stop_loss": "48500",
                                        "slippage_bps": 100})
    assert sorted(answer["cancelled"]) == sorted([tp["id"], sl["id"]])
    assert [(o.state, o.history.last().reason) for o in Order.objects.filter(pk__in=[tp["id"], sl["id"]])] == [
        ("cancelled", "tpsl_replaced")] * 2
    tp, sl = answer["take_profit"], answer["stop_loss"]
    match(perp)
    assert state(Order.objects.get(pk=tp["id"]))[0] == state(Order.objects.get(pk=sl["id"]))[0] == "untriggered"
    [mine] = api.get("/api/v1/positions").json()["results"]
    assert (mine["take_profit_order_id"], mine["stop_loss_order_id"]) == (tp["id"], sl["id"])

    # the index falls to 48,000: the mark to 48,240 (the basis bounded at 0.5%): the stop fires and sells 0.1
    # at the bid, 49,990
    quote(perp.pair, "binance", "48000", now + timedelta(seconds=1))
    perpetual_marks_update(now=now + timedelta(seconds=1))
    match(perp)
    assert state(Order.objects.get(pk=sl["id"]))[:2] == ("filled", D("0.1"))
    assert held(alice, perp)[:3] == (0, 0, 0)
    # the take-profit ends with the position it was set on
    taken = Order.objects.get(pk=tp["id"])
    assert (taken.state, taken.history.last().reason, taken.order_value) == ("cancelled", "position_closed", 0)
    report = invariants_check()
    assert report.ok, report.violations


def test_tpsl_end_when_a_fill_closes_the_position_not_when_it_reduces_it(perp, alice, api_as, now):  # noqa: F811
    """Alice long 0.1 with a stop at 49,000 and a take-profit at 52,000: selling 0.05 leaves both armed; selling the
    other 0.05 closes the position and cancels both (``position_closed``); when she opens a new long and the mark
    falls through 49,000, nothing of the old stop sells it."""
    api = api_as(alice)
    answer = post(api, "tpsl", {"contract": perp.symbol, "take_profit": "52000", "stop_loss": "49000"})[1]
    ids = [answer["take_profit"]["id"], answer["stop_loss"]["id"]]
    match(perp)
    send(alice, perp, "sell", "49990", "0.05", leverage=D(10), margin_mode="isolated")
    match(perp)
    assert held(alice, perp)[0] == D("0.05")
    assert [o.state for o in Order.objects.filter(pk__in=ids).order_by("pk")] == ["untriggered"] * 2
    send(alice, perp, "sell", "49990", "0.05", leverage=D(10), margin_mode="isolated")
    match(perp)
    assert held(alice, perp)[0] == 0
    assert [(o.state, o.history.last().reason) for o in Order.objects.filter(pk__in=ids).order_by("pk")] == [
        ("cancelled", "position_closed")] * 2
    assert [o.order_value for o in Order.objects.filter(pk__in=ids)] == [0, 0]
    # a new long, then the mark through the old stop's price: the new position stays whole
    send(alice, perp, "buy", "50010", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    quote(perp.pair, "binance", "48000", now + timedelta(seconds=1))
    perpetual_marks_update(now=now + timedelta(seconds=1))
    match(perp)
    assert held(alice, perp)[0] == D("0.1")
    report = invariants_check()
    assert report.ok, report.violations


@pytest.mark.parametrize("body", [{"take_profit": "49000"}, {"stop_loss": "51000"}, {"take_profit": "50000"}])
def test_tpsl_on_the_wrong_side_of_the_mark(perp, alice, api_as, body):  # noqa: F811
    status, answer = post(api_as(alice), "tpsl", {"contract": perp.symbol, **body})
    assert (status, answer["code"], answer["extra"]["mark_price"]) == (400, "trigger_price_invalid", "50000")
    assert answer["extra"]["field"] == next(iter(body))


def test_tpsl_neither_cancels_both_and_a_flat_position_has_none(perp, alice, api_as):  # noqa: F811
    api = api_as(alice)
    first = post(api, "tpsl", {"contract": perp.symbol, "stop_loss": "49000"})[1]
    assert first["take_profit"] is None
    status, answer = post(api, "tpsl", {"contract": perp.symbol})
    assert (status, answer["cancelled"], answer["stop_loss"]) == (200, [first["stop_loss"]["id"]], None)
    assert post(api, "tpsl", {"contract": perp.symbol, "take_profit": "50000.3"})[1]["code"] == "trigger_invalid"
    assert post(api_as(trader(perp)), "tpsl", {"contract": perp.symbol, "take_profit": "52000"})[1]["code"] == (
        "position_flat")


# Margin mode mismatch and GET /positions ------------------------------------------------------------------


def test_an_order_in_the_other_margin_mode_is_refused_at_entry(perp, alice, api_as):  # noqa: F811
    api = api_as(alice)
    order = {"contract": perp.symbol, "side": "buy", "price": "50010", "quantity": "0.01", "leverage": "10"}
    answer = api.post("/api/v1/orders", {**order, "client_order_id": "x1"}, format="json")  # cross by default
    assert (answer.status_code, answer.json()["code"]) == (409, "margin_mode_mismatch")
    assert api.post("/api/v1/orders", {**order, "client_order_id": "x2", "margin_mode": "isolated"},
                    format="json").status_code == 202
    # a reduce-only order only closes: either mode
    assert api.post("/api/v1/orders", {**order, "client_order_id": "x3", "side": "sell", "price": "49990",
                                       "reduce_only": True}, format="json").status_code == 202
    # opening an isolated position on a cross one
    maker = Order.objects.filter(contract=perp, side="sell").exclude(client=alice).first().client
    answer = api_as(maker).post("/api/v1/positions", {"contract": perp.symbol, "side": "long", "margin": "100",
                                                      "leverage": "10"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (409, "margin_mode_mismatch")


def test_positions_show_the_bankruptcy_price_and_margin_ratio(perp, alice, api_as):  # noqa: F811
    [mine] = api_as(alice).get("/api/v1/positions").json()["results"]
    # bankruptcy: 50,010 - 500.1 / 0.1 = 45,009; ratio: (0.005 + 0.002) x 0.1 x 50,000 / (500.1 - 1) = 35 / 499.1
    assert (mine["bankruptcy_price"], mine["margin_ratio"], mine["take_profit_order_id"]) == (
        "45009", "0.07012623", None)
    maker = Order.objects.filter(contract=perp, side="sell").exclude(client=alice).first().client
    [theirs] = api_as(maker).get("/api/v1/positions").json()["results"]
    assert (theirs["quantity"], theirs["bankruptcy_price"], theirs["margin_ratio"]) == ("-0.1", None, None)


def test_the_margin_ratio_of_a_position_with_no_equity_left_is_null(perp):  # noqa: F811
    # 1 + 3 x (33 - 100 / 3) is zero, but the quotient 100 / 3 leaves a residue of 1e-58: as a ratio's
    # denominator it made the ratio too long to quantize (a 500 on GET /positions)
    assert isolated_margin_ratio(perpetual=perp.perpetual, quantity=D(3), entry_px=D(100) / D(3), margin=D(1),
                                 mark=D(33)) is None


def test_a_short_closes_and_takes_its_tpsl_on_the_buy_side(perp, alice, api_as):  # noqa: F811
    maker = Order.objects.filter(contract=perp, side="sell").exclude(client=alice).first().client  # short 0.1, cross
    api = api_as(maker)
    status, answer = post(api, "tpsl", {"contract": perp.symbol, "take_profit": "51000"})
    assert (status, answer["code"], answer["extra"]["field"]) == (400, "trigger_price_invalid", "take_profit")
    status, answer = post(api, "tpsl", {"contract": perp.symbol, "take_profit": "49000", "stop_loss": "51000"})
    tp, sl = answer["take_profit"], answer["stop_loss"]
    # buys protected 5% above their trigger prices
    assert (tp["side"], tp["price"], sl["side"], sl["price"], sl["quantity"]) == ("buy", "51450", "buy", "53550",
                                                                                  "0.1")
    status, answer = post(api, "close", {"contract": perp.symbol, "quantity": "0.05"})
    assert (answer["order"]["side"], answer["order"]["price"]) == ("buy", "50250")  # 50,000 x 1.005
    assert Order.objects.get(pk=answer["order"]["id"]).margin_mode == "cross"
    match(perp)  # the maker's own asks at 50,010: no self-trade, nothing filled
    assert Position.objects.get(client=maker, contract=perp).quantity == D("-0.1")
