"""An operator moves a contract between batch auctions and the continuous book: its open orders are
cancelled and their collateral released, an audit row says who, why and when; refused while an
auction holds the contract's orders or once the contract stopped trading; asking for the mode it
already has changes nothing."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D
from threading import Barrier

import pytest
from django.db import connections
from rest_framework.test import APIClient

from ccp.accounts.models import FundLock
from ccp.book.services import book_match
from ccp.contracts.models import Contract, TradingModeChange
from ccp.contracts.services import contract_trading_mode_set
from ccp.errors import ApplicationError
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.services import order_validate
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory
from tests.ledger import assert_books_balance
from tests.orders.test_lock_order import lock_order_kept

LATER = NOW + timedelta(minutes=5)


def place(client, contract, side: str, price: str, *, validate: bool = True) -> Order:
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D("1"))
    if validate:
        if Contract.objects.get(pk=contract.pk).trading_mode == "continuous":
            book_match(contract_id=contract.pk, now=NOW)  # a continuous contract's orders meet its matcher
        else:
            order_validate(order_id=order.pk, now=NOW)
        order.refresh_from_db()
        assert order.state == "accepted"
    return order


@pytest.fixture
def market():
    """A future and two funded traders with a bid and an offer resting on it, and one order not validated yet."""
    future = ContractFactory(kind="future", strike_px=None)
    buyer, seller = (FundLockFactory(currency=future.collateral, fundlock=D("100000")).client for _ in range(2))
    orders = [place(buyer, future, "buy", "90000"), place(seller, future, "sell", "110000"),
              place(buyer, future, "buy", "95000", validate=False)]
    return future, orders


def set_mode(contract, mode: str, *, now=LATER, by: str = "operator", reason: str = "futures trade continuously"):
    return contract_trading_mode_set(contract_id=contract.pk, mode=mode, by=by, reason=reason, now=now)


def refusal(contract, mode: str, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as refused:
        set_mode(contract, mode, **kwargs)
    return refused.value


@pytest.mark.django_db
def test_the_change_cancels_open_orders_releases_their_collateral_and_writes_the_audit_row(
        market, django_capture_on_commit_callbacks):
    future, orders = market
    assert sum(FundLock.objects.values_list("order_value", flat=True)) > 0
    sequence = future.book_sequence + 2  # the two accepted orders' levels

    with django_capture_on_commit_callbacks(execute=True):
        changed = set_mode(future, "continuous")

    assert changed.trading_mode == "continuous"
    assert Contract.objects.get(pk=future.pk).trading_mode == "continuous"
    assert set(Order.objects.filter(contract=future).values_list("state", "order_value")) == {("cancelled", 0)}
    history = OrderStateHistory.objects.filter(order__contract=future, to_state="cancelled")
    assert Counter(history.values_list("reason", "from_state")) == {("trading_mode_changed", "accepted"): 2,
                                                                    ("trading_mode_changed", "received"): 1}
    assert set(FundLock.objects.values_list("order_value", "fundlock")) == {(0, D("100000"))}
    assert Contract.objects.get(pk=future.pk).book_sequence == sequence + 2  # both levels emptied
    (change,) = TradingModeChange.objects.all()
    assert (change.contract_id, change.from_mode, change.to_mode, change.changed_by, change.reason,
            change.orders_cancelled, change.at) == (future.pk, "auction", "continuous", "operator",
                                                    "futures trade continuously", 3, LATER)
    assert_books_balance()


@pytest.mark.django_db
def test_the_change_takes_its_locks_in_the_one_order(market):
    future, _ = market
    with lock_order_kept("contract_trading_mode_set"):
        set_mode(future, "continuous")
    with lock_order_kept("contract_trading_mode_set (nothing to change)"):
        set_mode(future, "continuous")


@pytest.mark.django_db
def test_switching_back_cancels_the_continuous_orders_and_adds_a_second_row(market):
    future, orders = market
    set_mode(future, "continuous")
    resting = place(orders[0].client, future, "buy", "91000")

    back = set_mode(future, "auction", now=LATER + timedelta(hours=1), reason="back to auctions")

    assert back.trading_mode == "auction"
    assert Order.objects.get(pk=resting.pk).state == "cancelled"
    assert list(TradingModeChange.objects.order_by("at").values_list("from_mode", "to_mode", "orders_cancelled")) == [
        ("auction", "continuous", 3), ("continuous", "auction", 1)]
    assert_books_balance()


@pytest.mark.django_db
def test_asking_for_the_mode_it_already_has_changes_nothing(market):
    future, orders = market

    same = set_mode(future, "auction")

    assert same.trading_mode == "auction"
    assert not TradingModeChange.objects.exists()
    assert [o.state for o in Order.objects.filter(contract=future).order_by("id")] == ["accepted", "accepted",
                                                                                       "received"]


@pytest.mark.django_db
def test_refused_while_an_auction_holds_the_contracts_orders_then_done_once_it_is_applied(market):
    future, orders = market
    other = ContractFactory(pair=future.pair)  # a call of the same pair, no orders
    auction = auction_open(pair=future.pair, now=NOW, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=NOW, settings=auction_settings())

    refused = refusal(future, "continuous")

    assert (refused.code, refused.http_status, refused.extra) == ("trading_mode_auction_running", 409,
                                                                  {"contract": future.symbol})
    assert Contract.objects.get(pk=future.pk).trading_mode == "auction"
    assert [o.state for o in Order.objects.filter(contract=future).order_by("id")] == ["accepted", "accepted",
                                                                                       "received"]
    assert not TradingModeChange.objects.exists()
    # a contract of the pair whose orders the auction does not hold moves meanwhile
    assert set_mode(other, "continuous").trading_mode == "continuous"

    auction_solve(auction_id=auction.pk, now=NOW)
    assert refusal(future, "continuous").code == "trading_mode_auction_running"
    auction_apply(auction_id=auction.pk, now=NOW)
    assert set_mode(future, "continuous").trading_mode == "continuous"
    assert_books_balance()


@pytest.mark.django_db
def test_refused_once_the_contract_stopped_trading(market):
    future, _ = market
    refused = refusal(future, "continuous", now=future.trading_ends_at)
    assert (refused.code, refused.http_status) == ("contract_not_listed", 409)
    Contract.objects.filter(pk=future.pk).update(state="halted")
    assert refusal(future, "continuous").code == "contract_not_listed"
    assert set_mode(future, "auction").trading_mode == "auction"  # already so: nothing to refuse
    assert not TradingModeChange.objects.exists()


@pytest.mark.django_db
def test_an_unknown_mode_contract_or_author_is_refused(market):
    future, _ = market
    assert refusal(future, "rfq").code == "trading_mode_invalid"
    assert refusal(future, "continuous", by=" ").code == "trading_mode_author_missing"
    with pytest.raises(ApplicationError) as missing:
        contract_trading_mode_set(contract_id=future.pk + 1000, mode="continuous", by="operator", reason="",
                                  now=LATER)
    assert (missing.value.code, missing.value.http_status) == ("not_found", 404)
    assert not TradingModeChange.objects.exists()


@pytest.mark.django_db
def test_the_contract_api_and_its_schema_show_the_mode(market):
    future, _ = market
    api = APIClient()
    assert api.get(f"/api/v1/contracts/{future.symbol}").json()["trading_mode"] == "auction"

    set_mode(future, "continuous")

    assert api.get(f"/api/v1/contracts/{future.symbol}").json()["trading_mode"] == "continuous"
    assert [c["trading_mode"] for c in api.get("/api/v1/contracts").json()["results"]] == ["continuous"]
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]["schemas"]
    mode = schema["Contract"]["properties"]["trading_mode"]
    assert mode["allOf"][0]["$ref"] == "#/components/schemas/TradingModeEnum"
    assert schema["TradingModeEnum"]["enum"] == ["auction", "continuous"]
    assert "trading_mode" in schema["Contract"]["required"]


def _in_thread(job):
    try:
        return job()
    finally:
        connections.close_all()  # each thread has its own connection


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("modes", [("continuous", "continuous"), ("continuous", "auction")])
def test_concurrent_changes_write_one_row_per_actual_change(market, modes):
    future, _ = market
    start = Barrier(len(modes))

    def change(mode: str) -> str:
        start.wait()
        return set_mode(future, mode, by=f"operator-{mode}").trading_mode

    with ThreadPoolExecutor(max_workers=len(modes)) as pool:
        results = [f.result() for f in [pool.submit(_in_thread, lambda m=m: change(m)) for m in modes]]

    assert sorted(results) == sorted(modes)  # each call returns the mode it asked for
    rows = list(TradingModeChange.objects.order_by("id").values_list("from_mode", "to_mode"))
    final = Contract.objects.get(pk=future.pk).trading_mode
    # the rows chain from the first mode to the final one, each a real change
    assert rows and rows[0][0] == "auction" and rows[-1][1] == final
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))
    if modes[0] == modes[1]:
        assert rows == [("auction", "continuous")]
    else:  # auction -> continuous -> auction, or the auction call first (nothing) then continuous
        assert rows in ([("auction", "continuous"), ("continuous", "auction")], [("auction", "continuous")])
    assert TradingModeChange.objects.filter(orders_cancelled__gt=0).count() == 1
    assert_books_balance()
