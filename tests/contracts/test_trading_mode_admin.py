"""The webconsole moves contracts between auctions and the continuous book: the actions ask why on an
intermediate page, say per contract what was done or refused, and the changes are listed read-only,
newest first, on their own page and on each contract's."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client as BrowserClient
from django.urls import reverse

from ccp.contracts.models import Contract, TradingModeChange
from ccp.contracts.services import contract_trading_mode_set
from ccp.orders.models import Order
from ccp.orders.services import order_validate
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:contracts_contract_changelist"


@pytest.fixture
def contracts():
    """A future with two open orders, a call without any, and a halted put."""
    future = ContractFactory(kind="future", strike_px=None)
    trader = FundLockFactory(currency=future.collateral, fundlock=D("100000")).client
    for price in ("90000", "91000"):
        order = ReceivedOrderFactory(client=trader, contract=future, price=D(price))
        order_validate(order_id=order.pk, now=NOW)
    call = ContractFactory(pair=future.pair)
    put = ContractFactory(pair=future.pair, kind="put", state="halted")
    return future, call, put


def chosen(action: str, *contracts) -> dict:
    return {"action": action, "_selected_action": [c.pk for c in contracts]}


def test_trade_continuously_asks_why_then_says_per_contract_what_it_did(admin_client, contracts):
    future, call, put = contracts
    url = reverse(CHANGELIST)
    Contract.objects.filter(pk=call.pk).update(trading_mode="continuous")

    page = admin_client.post(url, chosen("trade_continuously", future, call, put))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Trade 3 contract(s) continuously" in text
    assert future.symbol in text and put.symbol in text and "(already)" in text
    assert "<td>2</td>" in text  # the future's open orders, which the change cancels

    no_reason = admin_client.post(url, {**chosen("trade_continuously", future, call, put), "apply": "1", "reason": ""})
    assert b"This field is required." in no_reason.content
    assert not TradingModeChange.objects.exists()

    done = admin_client.post(url, {**chosen("trade_continuously", future, call, put), "apply": "1",
                               "reason": "futures trade on the book"}, follow=True)
    text = done.content.decode()
    assert f"{future.symbol} now trades continuously; 2 open order(s) cancelled." in text
    assert f"{call.symbol} already trades continuously." in text
    assert f"{put.symbol}: " in text and "(contract_not_listed)" in text
    assert dict(Contract.objects.values_list("symbol", "trading_mode")) == {
        future.symbol: "continuous", call.symbol: "continuous", put.symbol: "auction"}
    assert set(Order.objects.values_list("state", flat=True)) == {"cancelled"}
    (change,) = TradingModeChange.objects.all()
    assert (change.contract_id, change.changed_by, change.reason, change.orders_cancelled) == (
        future.pk, "admin", "futures trade on the book", 2)


def test_the_list_shows_and_filters_the_mode(admin_client, contracts):
    future, call, _ = contracts
    Contract.objects.filter(pk=future.pk).update(trading_mode="continuous")
    text = admin_client.get(reverse(CHANGELIST), {"trading_mode__exact": "continuous"}).content.decode()
    assert future.symbol in text and call.symbol not in text
    assert "continuous order book" in text
    assert "Trade continuously" in text and "Trade in auctions" in text


def test_the_changes_are_listed_read_only_newest_first_and_on_the_contract(admin_client, contracts):
    future, _, _ = contracts
    contract_trading_mode_set(contract_id=future.pk, mode="continuous", by="alice", reason="first", now=NOW)
    contract_trading_mode_set(contract_id=future.pk, mode="auction", by="bob", reason="second",
                              now=NOW + timedelta(hours=1))

    text = admin_client.get(reverse("admin:contracts_tradingmodechange_changelist")).content.decode()
    assert text.index("second") < text.index("first")
    first = TradingModeChange.objects.get(reason="first")
    assert admin_client.get(reverse("admin:contracts_tradingmodechange_add")).status_code == 403
    page = admin_client.post(reverse("admin:contracts_tradingmodechange_change", args=[first.pk]), {"reason": "edited"})
    assert page.status_code == 403 and TradingModeChange.objects.get(pk=first.pk).reason == "first"
    contract_page = admin_client.get(reverse("admin:contracts_contract_change", args=[future.pk])).content.decode()
    assert contract_page.index("second") < contract_page.index("first") and "bob" in contract_page


def test_a_viewer_without_the_change_permission_gets_no_mode_actions(contracts):
    viewer = get_user_model().objects.create_user("viewer", "viewer@example.com", "viewer-password-1",
                                                  is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_contract"))
    browser = BrowserClient()
    browser.login(username="viewer", password="viewer-password-1")
    future, _, _ = contracts
    text = browser.get(reverse(CHANGELIST)).content.decode()
    assert future.symbol in text and "Trade continuously" not in text
    browser.post(reverse(CHANGELIST), {**chosen("trade_continuously", future), "apply": "1", "reason": "x"})
    assert Contract.objects.get(pk=future.pk).trading_mode == "auction"
