"""Stop and take-profit orders and an entry's take-profit/stop-loss legs on the continuous venue, on the
database: armed as orders ``untriggered`` holding their worst case, fired by the last trade, the mark or
the index price, entering the book as market or limit orders; one leg firing cancels the other; a
batch that rebuilds its engine from the database between every step ends exactly as one that never
does."""

import random
from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.book import services
from ccp.book.services import book_match
from ccp.orders.models import Order
from ccp.prices.models import SpotPrice, VenueSymbol
from ccp.risk.models import Position
from ccp.system.invariants import invariants_check
from tests.book.test_venue import continuous_future, match, send, state, trader, trades
from tests.conftest import NOW
from tests.factories import ContractFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db


def leg(trigger_price, price, kind="market", source="last"):
    return {"trigger_price": trigger_price, "price": price, "kind": kind, "trigger_source": source}


def legs(order):
    return {o.leg: o for o in Order.objects.filter(parent=order)}


def test_attached_legs_arm_with_the_fills_grow_and_one_firing_cancels_the_other():
    contract = continuous_future()
    me, maker, bidder = trader(contract), trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "1")
    entry = send(me, contract, "buy", "100", "2", attached={"tp": leg("105", "98"), "sl": leg("95", "94.5", "limit")})
    match(contract)
    entry.refresh_from_db()
    # entry: 1 lot left at 100 (50) + its take-profit (sell at 98: 52) + its stop-loss (sell at 94.5: 55.5)
    assert entry.order_value == 50 + 52 + D("55.5")
    tp, sl = legs(entry)["tp"], legs(entry)["sl"]
    assert (tp.state, tp.quantity, tp.side, tp.reduce_only, tp.order_value) == ("untriggered", 1, "sell", True, 52)
    assert (sl.state, sl.kind, sl.price, sl.trigger, sl.order_value) == ("untriggered", "limit", D("94.5"), "stop",
                                                                         D("55.5"))
    assert_books_balance()
    send(maker, contract, "sell", "100", "1")
    match(contract)
    tp.refresh_from_db()
    assert tp.quantity == 2
    send(bidder, contract, "buy", "99", "5")
    send(maker, contract, "sell", "105", "1")
    send(bidder, contract, "buy", "105", "1")  # last = 105: the take-profit fires, sells 2 into the bid at 99
    match(contract)
    tp.refresh_from_db()
    sl.refresh_from_db()
    assert (tp.state, tp.filled_quantity, tp.triggered_at is not None) == ("filled", 2, True)
    assert (sl.state, sl.history.last().reason, sl.order_value) == ("cancelled", "oco_sibling_triggered", 0)
    assert trades(contract)[-1] == (D("99"), D("2"), Order.objects.get(client=bidder, price=99).pk, tp.pk, "sell")
    assert Position.objects.get(client=me, contract=contract).quantity == 0
    assert_books_balance()
    assert invariants_check().ok


def test_a_standalone_stop_fires_on_the_last_trade_and_one_already_crossed_fires_at_once():
    contract = continuous_future()
    me, maker, other = trader(contract), trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "2")
    send(me, contract, "buy", "100", "2")
    match(contract)
    stop = send(me, contract, "sell", "90", "2", kind="market", time_in_force="ioc", trigger="stop",
                trigger_price=D("98"), trigger_source="last", reduce_only=True)
    match(contract)
    assert state(stop)[0] == "untriggered"
    send(other, contract, "buy", "97", "3")
    send(maker, contract, "sell", "97", "1")  # last 97: at or below 98, the stop fires
    match(contract)
    stop.refresh_from_db()
    assert (stop.state, stop.filled_quantity, stop.history.filter(to_state="accepted").get().reason) == (
        "filled", 2, "triggered")
    assert Position.objects.get(client=me, contract=contract).quantity == 0
    send(maker, contract, "buy", "96", "1")
    crossed = send(other, contract, "sell", "90", "1", kind="market", time_in_force="ioc", trigger="stop",
                   trigger_price=D("98"), trigger_source="last", reduce_only=True)
    match(contract)  # last is 97 already: fired when armed, in the same batch
    assert state(crossed)[:2] == ("filled", D("1"))
    assert_books_balance()


def test_a_stop_on_the_mark_price_fires_when_the_index_moves():
    contract = continuous_future()
    me, maker = trader(contract), trader(contract)
    from ccp.clock import utcnow

    VenueSymbol.objects.create(pair=contract.pair, venue="binance", symbol="BTC/USDT")

    def index(price):
        SpotPrice.objects.create(pair=contract.pair, source="binance", price=D(price),
                                 observed_at=utcnow() - timedelta(seconds=1), fetched_at=utcnow())

    index("101")
    send(maker, contract, "buy", "95", "1")
    stop = send(me, contract, "sell", "94", "1", kind="market", time_in_force="ioc", trigger="stop",
                trigger_price=D("98"), trigger_source="mark")
    book_match(contract_id=contract.pk, now=utcnow())
    assert state(stop)[0] == "untriggered"
    index("97.3")  # mark 97.3 -> 97.5 in ticks of 0.5 (half-even): at or below 98
    book_match(contract_id=contract.pk, now=utcnow())
    assert state(stop)[:2] == ("filled", D("1"))
    assert trades(contract)[-1][:2] == (D("95"), D("1"))
    assert_books_balance()


def scenario(contract, rng, traders, steps=60):
    """Random orders with legs, stops, modifies and cancels; matched batch by batch."""
    for n in range(steps):
        who = traders[rng.randrange(len(traders))]
        side = rng.choice(["buy", "sell"])
        price = D(100) + D(rng.randint(-8, 8)) / 2
        roll = rng.random()
        if roll < 0.15:
            down = (side == "sell")
            send(who, contract, side, str(price + (-3 if down else 3)), str(rng.randint(1, 2)), kind="market",
                 time_in_force="ioc", trigger=rng.choice(["stop", "take_profit"]), trigger_price=price,
                 trigger_source="last", client_order_id=f"s{n}")
        elif roll < 0.25:
            mine = list(Order.objects.filter(client=who, contract=contract, state__in=["accepted",
                                                                                       "partially_filled"]))
            if mine:
                from ccp.book.services import order_modify
                order_modify(client=who, order_id=rng.choice(mine).pk, price=price, quantity=None, now=NOW)
        elif roll < 0.32:
            mine = list(Order.objects.filter(client=who, contract=contract, state__in=["accepted", "untriggered"]))
            if mine:
                from ccp.orders.services import order_cancel
                order_cancel(client=who, order_id=rng.choice(mine).pk, now=NOW)
        else:
            attached = None
            if rng.random() < 0.5:
                away = 1 if side == "buy" else -1
                attached = {"tp": leg(str(price + 2 * away), str(price + away - 4 * away)),
                            "sl": leg(str(price - 2 * away), str(price - 2 * away - away), rng.choice(["limit",
                                                                                                       "market"]))}
            send(who, contract, side, str(price), str(rng.randint(1, 3)), attached=attached,
                 client_order_id=f"o{n}")
        if rng.random() < 0.4:
            yield


def comparable(snapshot):
    """An engine's state without its sequence numbers: a rebuild numbers rests and arms from the highest
    live one, the engine it replaces from its whole past; only their order matters, and it is the list
    order here."""
    orders = [{k: v for k, v in o.items() if k != "seq"} for o in snapshot["orders"]]
    triggers = [{k: v for k, v in t.items() if k != "seq"} for t in snapshot["triggers"]]
    return orders, triggers, {k: v for k, v in snapshot["positions"].items() if v}, snapshot["prices"]["last"]


@pytest.mark.parametrize("seed", range(1, 9))
def test_the_engine_a_batch_leaves_is_the_one_a_rebuild_from_the_database_gives(
        seed, django_capture_on_commit_callbacks):
    """After every batch of random orders with legs, stops, modifies and cancels, the engine the matcher
    keeps in memory is the one it would rebuild from the database after a restart."""
    from ccp.book.versions import book_version
    from tests.factories import FundLockFactory

    contract = continuous_future()
    traders = [FundLockFactory(currency=contract.collateral, fundlock=D("3000")).client for _ in range(5)]
    compared = 0
    for _ in scenario(contract, random.Random(seed), traders, steps=120):
        with django_capture_on_commit_callbacks(execute=True):
            match(contract)
        cached = services._BOOKS.get(contract.pk)
        if cached is None or cached.version != book_version(contract.pk):
            continue  # a cancel since the last batch: the next batch rebuilds anyway
        rebuilt = services.book_rebuild(contract, cached.version)
        assert comparable(cached.engine.snapshot()) == comparable(rebuilt.engine.snapshot())
        compared += 1
    assert compared > 5
    orders = Order.objects.filter(contract=contract)
    assert orders.filter(leg__in=["tp", "sl"], triggered_at__isnull=False).exists()
    assert orders.filter(trigger="stop", parent__isnull=True, triggered_at__isnull=False).exists()
    assert trades(contract)
    assert_books_balance()
    assert invariants_check().ok


def test_stops_and_legs_through_the_api(api_as, eager_tasks):
    contract = continuous_future()
    me, maker = trader(contract), trader(contract)
    send(maker, contract, "sell", "100", "1")
    match(contract)
    with eager_tasks():
        entry = api_as(me).post("/api/v1/orders", {
            "client_order_id": "e1", "contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1",
            "take_profit": {"trigger_price": "110", "price": "108", "trigger_source": "last"},
            "stop_loss": {"trigger_price": "95", "price": "94", "kind": "limit"}}, format="json").json()
        stop = api_as(me).post("/api/v1/orders", {
            "client_order_id": "s1", "contract": contract.symbol, "side": "buy", "kind": "market", "price": "120",
            "quantity": "1", "trigger": "stop", "trigger_price": "115"}, format="json").json()
    assert entry["attached"] == {"tp": {"trigger_price": "110", "price": "108", "kind": "market",
                                        "trigger_source": "last"},
                                 "sl": {"trigger_price": "95", "price": "94", "kind": "limit",
                                        "trigger_source": "mark"}}
    assert (stop["trigger"], stop["trigger_price"], stop["trigger_source"], stop["time_in_force"]) == (
        "stop", "115", "mark", "ioc")
    mine = {o["client_order_id"]: o for o in api_as(me).get("/api/v1/orders").json()["results"]}
    assert mine["s1"]["state"] == "untriggered"
    assert (mine[f"{entry['id']}/tp"]["state"], mine[f"{entry['id']}/tp"]["parent"]) == ("untriggered", entry["id"])
    refused = api_as(me).post("/api/v1/orders", {
        "client_order_id": "s2", "contract": contract.symbol, "side": "buy", "price": "120", "quantity": "1",
        "trigger": "stop", "trigger_price": "115.25"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "trigger_invalid")
    auction = api_as(me).post("/api/v1/orders", {
        "client_order_id": "a1", "contract": ContractFactory().symbol, "side": "buy", "price": "100", "quantity": "1",
        "stop_loss": {"trigger_price": "95", "price": "94"}}, format="json")
    assert auction.json()["code"] == "order_type_not_in_auction"
    with eager_tasks():
        assert api_as(me).post(f"/api/v1/orders/{stop['id']}/cancel").json()["state"] == "cancelled"
    assert_books_balance()
