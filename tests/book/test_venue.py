"""The continuous venue on the database (``ccp.book.services``): a contract in continuous mode matches its
received orders in arrival order through the engine, checks collateral first, books through the
clearing core, and rebuilds its book from the database whenever its cached engine is stale."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.book import services
from ccp.book.services import book_match, order_modify
from ccp.clearing.models import Trade, Venue
from ccp.contracts.models import TradingMode
from ccp.errors import Conflict
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_cancel, order_submit
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from ccp.system.invariants import invariants_check
from tests.conftest import NOW
from tests.factories import EXPIRY, ContractFactory, FundLockFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db


def continuous_future(**kwargs):
    return ContractFactory(kind="future", strike_px=None, floor_px=D("50"), cap_px=D("150"), tick_size=D("0.5"),
                           lot_size=D("1"), trading_mode=TradingMode.CONTINUOUS, **kwargs)


def trader(contract, fundlock="10000"):
    return FundLockFactory(currency=contract.collateral, fundlock=D(fundlock)).client


_ids = iter(range(1, 10**9))


def send(client, contract, side, price, quantity, **terms):
    coid = terms.pop("client_order_id", None) or f"o{next(_ids)}"
    order, _ = order_submit(client=client, request=OrderRequest(
        client_order_id=coid, contract=contract, side=side, kind=terms.pop("kind", "limit"),
        price=D(price), quantity=D(quantity), **terms), now=NOW, validate_later=False)
    return order


def match(contract):
    while book_match(contract_id=contract.pk, now=NOW):
        pass


def state(order):
    order.refresh_from_db()
    return order.state, order.filled_quantity, order.reject_reason


def trades(contract):
    return list(Trade.objects.filter(contract=contract).order_by("sequence").values_list(
        "price", "quantity", "buy_order_id", "sell_order_id", "aggressor_side"))


def test_a_crossing_order_trades_at_the_resting_price_and_rests_its_leftover():
    contract = continuous_future()
    alice, bob = trader(contract), trader(contract)
    sell = send(bob, contract, "sell", "100", "3")
    match(contract)
    assert state(sell) == ("accepted", D("0"), "")
    buy = send(alice, contract, "buy", "101", "5")
    match(contract)
    assert trades(contract) == [(D("100"), D("3"), buy.pk, sell.pk, "buy")]
    assert state(sell) == ("filled", D("3"), "")
    assert state(buy) == ("partially_filled", D("3"), "")
    buy.refresh_from_db()
    assert buy.order_value == D("102")  # 2 resting lots at 101, worst case (101 - 50) each
    assert Position.objects.get(client=alice, contract=contract).quantity == D("3")
    assert Position.objects.get(client=bob, contract=contract).quantity == D("-3")
    assert set(Trade.objects.values_list("venue", flat=True)) == {Venue.BOOK}
    assert CashMovement.objects.filter(origin="book").count() == 2
    assert_books_balance()
    assert invariants_check().ok


def test_price_time_priority_survives_a_rebuild_from_the_database():
    contract = continuous_future()
    first, second, third, taker = (trader(contract) for _ in range(4))
    a = send(first, contract, "sell", "100", "1")
    b = send(second, contract, "sell", "99.5", "1")
    c = send(third, contract, "sell", "100", "1")
    match(contract)
    services._BOOKS.clear()  # a restart: the next batch rebuilds from the database
    buy = send(taker, contract, "buy", "100", "2")
    match(contract)
    assert trades(contract) == [(D("99.5"), D("1"), buy.pk, b.pk, "buy"), (D("100"), D("1"), buy.pk, a.pk, "buy")]
    assert state(c)[0] == "accepted"


def test_a_market_order_never_trades_beyond_its_protection_and_its_leftover_is_cancelled():
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "1")
    send(maker, contract, "sell", "104", "5")
    match(contract)
    market = send(taker, contract, "buy", "102", "3", kind="market", time_in_force="ioc")
    match(contract)
    assert [t[:2] for t in trades(contract)] == [(D("100"), D("1"))]
    assert state(market) == ("cancelled", D("1"), "")
    market.refresh_from_db()
    assert market.time_in_force == "ioc" and market.order_value == 0
    assert market.history.last().reason == "market_protection_leftover"
    assert_books_balance()


@pytest.mark.parametrize(("terms", "reason"), [
    ({"time_in_force": "post_only"}, "post_only_would_take"),
    ({"time_in_force": "fok", "quantity": "4"}, "fok_not_fillable"),
    ({"reduce_only": True}, "reduce_only_nothing_to_reduce"),
])
def test_the_engine_rejects_with_its_reason_and_nothing_changes(terms, reason):
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "3")
    match(contract)
    before = FundLock.objects.get(client=taker).order_value
    order = send(taker, contract, "buy", "100", terms.pop("quantity", "1"), **terms)
    match(contract)
    assert state(order) == ("rejected", D("0"), reason)
    assert trades(contract) == []
    assert FundLock.objects.get(client=taker).order_value == before == 0
    assert_books_balance()


def test_an_order_beyond_available_collateral_is_rejected_before_the_engine_sees_it():
    contract = continuous_future()
    maker, poor = trader(contract), trader(contract, fundlock="60")
    send(maker, contract, "sell", "100", "1")
    match(contract)
    fits = send(poor, contract, "buy", "80", "1")  # holds 30
    too_much = send(poor, contract, "buy", "100", "1")  # would hold 50 more: 60 - 30 left
    match(contract)
    assert state(fits)[0] == "accepted"
    assert state(too_much) == ("rejected", D("0"), "insufficient_collateral")
    assert trades(contract) == []
    assert FundLock.objects.get(client=poor).available == D("30")
    assert_books_balance()


@pytest.mark.parametrize(("mode", "resting_state", "incoming_state"), [
    ("cancel_incoming", "accepted", "cancelled"),
    ("cancel_resting", "cancelled", "filled"),
    ("cancel_both", "cancelled", "cancelled"),
])
def test_self_trade_prevention_modes(mode, resting_state, incoming_state):
    contract = continuous_future()
    me, other = trader(contract), trader(contract)
    mine = send(me, contract, "sell", "100", "1")
    theirs = send(other, contract, "sell", "100.5", "1")
    match(contract)
    buy = send(me, contract, "buy", "101", "1", self_trade_prevention=mode)
    match(contract)
    assert state(mine)[0] == resting_state
    assert state(buy)[0] == incoming_state
    assert all(t[3] == theirs.pk for t in trades(contract))
    assert_books_balance()


def test_a_cancelled_resting_order_never_trades_though_the_engine_was_cached():
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    first = send(maker, contract, "sell", "100", "1")
    second = send(maker, contract, "sell", "100", "1")
    match(contract)
    order_cancel(client=maker, order_id=first.pk, now=NOW)
    buy = send(taker, contract, "buy", "100", "1")
    match(contract)
    assert trades(contract) == [(D("100"), D("1"), buy.pk, second.pk, "buy")]
    assert_books_balance()


def test_matching_twice_has_one_effect_and_an_auction_contract_is_not_matched():
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "1")
    send(taker, contract, "buy", "100", "1")
    match(contract)
    assert book_match(contract_id=contract.pk, now=NOW) == 0
    assert len(trades(contract)) == 1
    auction = ContractFactory()
    order = send(trader(auction, fundlock="100000"), auction, "buy", "100", "1")
    assert book_match(contract_id=auction.pk, now=NOW) == 0
    assert state(order)[0] == "received"


def test_reduce_only_is_cut_to_the_position():
    contract = continuous_future()
    longer, maker = trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "2")
    send(longer, contract, "buy", "100", "2")
    match(contract)
    send(maker, contract, "buy", "99", "5")
    close = send(longer, contract, "sell", "99", "5", reduce_only=True, time_in_force="ioc")
    match(contract)
    assert state(close)[:2] == ("filled", D("2"))
    close.refresh_from_db()
    assert (close.quantity, close.quantity_requested) == (D("2"), D("5"))
    assert close.history.filter(to_state="accepted").get().reason == "reduce_only_cut"
    assert Position.objects.get(client=longer, contract=contract).quantity == 0
    assert_books_balance()


def test_orders_on_a_continuous_contract_through_the_api_single_and_batch(api_as, eager_tasks):
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    with eager_tasks():
        rest = api_as(maker).post("/api/v1/orders/batch", {"orders": [
            {"client_order_id": f"m{n}", "contract": contract.symbol, "side": "sell", "price": price, "quantity": "2",
             "time_in_force": "post_only"} for n, price in enumerate(["100", "100.5", "101"])]}, format="json")
    assert [r["order"]["time_in_force"] for r in rest.json()["results"]] == ["post_only"] * 3
    with eager_tasks():
        response = api_as(taker).post("/api/v1/orders", {
            "client_order_id": "t1", "contract": contract.symbol, "side": "buy", "kind": "market", "price": "100.5",
            "quantity": "5"}, format="json")
    assert response.status_code == 202
    order = api_as(taker).get(f"/api/v1/orders/{response.json()['id']}").json()
    assert (order["state"], order["filled_quantity"], order["average_fill_price"], order["time_in_force"]) == (
        "cancelled", "4", "100.25", "ioc")
    assert [f["price"] for f in order["fills"]] == ["100", "100.5"]
    assert api_as(maker).get("/api/v1/orders/" + str(response.json()["id"])).status_code == 404
    assert_books_balance()


def modify(client, order, price=None, quantity=None):
    result, queued = order_modify(client=client, order_id=order.pk, now=NOW,
                                  price=None if price is None else D(price),
                                  quantity=None if quantity is None else D(quantity))
    return result, queued


def test_a_smaller_size_keeps_time_priority_and_releases_collateral_at_once():
    contract = continuous_future()
    first, second, taker = trader(contract), trader(contract), trader(contract)
    a = send(first, contract, "sell", "100", "2")
    b = send(second, contract, "sell", "100", "2")
    match(contract)
    assert modify(first, a, quantity="1")[1] is False
    a.refresh_from_db()
    assert (a.quantity, a.order_value) == (D("1"), D("50"))  # (cap 150 - 100) x 1 lot
    buy = send(taker, contract, "buy", "100", "2")
    match(contract)
    assert trades(contract) == [(D("100"), D("1"), buy.pk, a.pk, "buy"), (D("100"), D("1"), buy.pk, b.pk, "buy")]
    assert_books_balance()


def test_a_new_price_loses_time_priority_and_may_trade_at_once():
    contract = continuous_future()
    first, second, taker = trader(contract), trader(contract), trader(contract)
    a = send(first, contract, "sell", "100", "1")
    b = send(second, contract, "sell", "100", "1")
    match(contract)
    assert modify(first, a, price="100.5")[1] is True
    match(contract)
    assert modify(first, a, price="100")[1] is True
    match(contract)
    buy = send(taker, contract, "buy", "100", "1")
    bid = send(taker, contract, "buy", "99", "3")
    match(contract)
    assert trades(contract) == [(D("100"), D("1"), buy.pk, b.pk, "buy")]
    modify(first, a, price="99")  # now crosses the bid: trades as the taker, at the bid's price
    match(contract)
    assert trades(contract)[-1] == (D("99"), D("1"), bid.pk, a.pk, "sell")
    a.refresh_from_db()
    assert (a.state, a.price, a.modify_requested_at, a.order_value) == ("filled", D("99"), None, 0)
    assert_books_balance()
    assert invariants_check().ok


def test_a_modification_the_matcher_refuses_leaves_the_order_unchanged():
    contract = continuous_future()
    maker, poor = trader(contract), trader(contract, fundlock="60")
    send(maker, contract, "sell", "100", "1")
    post = send(poor, contract, "buy", "98", "1", time_in_force="post_only")
    match(contract)
    modify(poor, post, price="100")
    match(contract)
    post.refresh_from_db()
    assert (post.price, post.state, post.modify_reject_reason) == (D("98"), "accepted", "post_only_would_take")
    modify(poor, post, quantity="2")  # 48 held, 96 needed, 60 in all
    match(contract)
    post.refresh_from_db()
    assert (post.quantity, post.order_value, post.modify_reject_reason) == (D("1"), D("48"),
                                                                           "insufficient_collateral")
    assert trades(contract) == []
    assert_books_balance()


def test_modifying_to_at_most_what_filled_cancels_the_rest_and_auction_orders_cannot_be_modified():
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    sell = send(maker, contract, "sell", "100", "3")
    send(taker, contract, "buy", "100", "1")
    match(contract)
    cancelled, queued = modify(maker, sell, quantity="1")
    assert (cancelled.state, cancelled.filled_quantity, queued) == ("cancelled", D("1"), False)
    assert cancelled.history.last().reason == "modified_below_filled"
    auction = ContractFactory()
    order = send(trader(auction, fundlock="100000"), auction, "buy", "100", "1")
    with pytest.raises(Conflict) as refused:
        modify(order.client, order, price="101")
    assert refused.value.code == "modify_not_in_auction"
    assert_books_balance()


def test_cancel_all_and_close_through_the_api(api_as, eager_tasks):
    contract, other = continuous_future(), continuous_future(expiry_date=EXPIRY + timedelta(days=7))
    me, maker = trader(contract, fundlock="100000"), trader(contract, fundlock="100000")
    send(maker, contract, "sell", "100", "2")
    send(me, contract, "buy", "100", "2")
    mine = [send(me, c, side, price, "1") for c in (contract, other) for side, price in
            (("buy", "90"), ("sell", "120"))]
    match(contract)
    match(other)
    response = api_as(me).post("/api/v1/orders/cancel-all", {"contract": contract.symbol, "side": "buy"},
                               format="json")
    assert [o["id"] for o in response.json()["orders"]] == [mine[0].pk]
    assert [state(o)[0] for o in mine] == ["cancelled", "accepted", "accepted", "accepted"]
    response = api_as(me).post("/api/v1/orders/cancel-all", {}, format="json")
    assert sorted(o["id"] for o in response.json()["orders"]) == [o.pk for o in mine[1:]]
    assert api_as(me).post("/api/v1/orders/close", {"client_order_id": "c1", "contract": other.symbol,
                                                    "price": "80"}, format="json").json()["code"] == "no_position"
    send(maker, contract, "buy", "99", "5")
    with eager_tasks():
        response = api_as(me).post("/api/v1/orders/close", {"client_order_id": "c2", "contract": contract.symbol,
                                                             "price": "95"}, format="json")
    assert response.status_code == 202
    close = Order.objects.get(pk=response.json()["id"])
    assert (close.side, close.kind, close.reduce_only, close.state, close.filled_quantity) == (
        "sell", "market", True, "filled", D("2"))
    assert Position.objects.get(client=me, contract=contract).quantity == 0
    again = api_as(me).post("/api/v1/orders/close", {"client_order_id": "c2", "contract": contract.symbol,
                                                     "price": "95"}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, close.pk)
    assert_books_balance()
