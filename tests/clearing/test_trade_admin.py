"""The trade ledger in the webconsole: an operator follows a client's "fills" link or an auction's
"trades" link to exactly those trades, newest first, money in plain digits, read-only; the list costs
the same number of queries for 5 trades as for 50; only staff see it."""

import re
from datetime import timedelta
from decimal import Decimal as D
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ccp.clearing.models import Trade
from ccp.matching.models import Auction
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

TRADES = reverse("admin:clearing_trade_changelist")


def browser_for(username: str, *, staff: bool = False, superuser: bool = False, perms=()) -> BrowserClient:
    user = get_user_model().objects.create_user(username, password="pass-word-123", is_staff=staff,
                                                is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    browser = BrowserClient()
    browser.login(username=username, password="pass-word-123")
    return browser


@pytest.fixture
def operator() -> BrowserClient:
    return browser_for("operator", staff=True, superuser=True)


class Ledger:
    """Trades between four clients on two contracts, booked by two auctions (``auction-<id>``)."""

    def __init__(self):
        self.contracts = [ContractFactory(), ContractFactory(strike_px=D("110000"))]
        self.clients = [ClientFactory() for _ in range(4)]
        self.auctions = [Auction.objects.create(group=group, slot=NOW, opened_at=NOW) for group in ("A/B", "C/D")]
        self.sequence = {c.pk: 0 for c in self.contracts}

    def trade(self, n: int, buyer: int, seller: int, auction: int, contract: int = 0, venue_ref: str = "") -> Trade:
        contract, buyer, seller = self.contracts[contract], self.clients[buyer], self.clients[seller]
        self.sequence[contract.pk] += 1
        buy = ReceivedOrderFactory(client=buyer, contract=contract, side="buy")
        sell = ReceivedOrderFactory(client=seller, contract=contract, side="sell")
        return Trade.objects.create(
            venue="auction", venue_ref=venue_ref or self.auctions[auction].ref, contract=contract,
            sequence=self.sequence[contract.pk], price=D("2000.5") + n, quantity=D("0.25"), buy_order=buy,
            buy_client=buyer, sell_order=sell, sell_client=seller, executed_at=NOW + timedelta(seconds=n))

    def trades(self, count: int, start: int = 0) -> list[Trade]:
        """``count`` trades, each pair of clients in turn, alternating auctions and contracts."""
        return [self.trade(n, n % 4, (n + 1) % 4, n % 2, (n // 2) % 2) for n in range(start, start + count)]


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


def shown(browser, url: str, **params) -> list[int]:
    """The trade ids the list shows, in its order."""
    response = browser.get(url, params)
    assert response.status_code == 200, url
    return [trade.pk for trade in response.context["cl"].result_list]


def link(html: str, text: str) -> str:
    (href,) = re.findall(rf'<a href="([^"]+)">{text}</a>', html)
    return unescape(href)


def test_a_clients_fills_link_shows_its_trades_on_either_side_newest_first(operator, ledger):
    trades = ledger.trades(8)
    second = ledger.clients[1]
    page = operator.get(reverse("admin:accounts_client_change", args=[second.pk])).content.decode()
    ids = shown(operator, link(page, "fills"))
    # client 1 bought trades 1 and 5 and sold trades 0 and 4: every one of them, nothing else
    assert ids == [trades[n].pk for n in (5, 4, 1, 0)]
    listed = operator.get(reverse("admin:accounts_client_changelist")).content.decode()
    assert f'href="{TRADES}?client={second.pk}"' in listed


def test_the_client_filter_works_from_the_url_and_names_the_client(operator, ledger):
    trades = ledger.trades(8)
    first = ledger.clients[0]
    response = operator.get(TRADES, {"client": first.pk})
    assert [t.pk for t in response.context["cl"].result_list] == [trades[n].pk for n in (7, 4, 3, 0)]
    assert first.checksum_address in response.content.decode()  # the sidebar shows whose trades these are
    # an unknown or malformed client selects nothing (never everything)
    for value in (max(c.pk for c in ledger.clients) + 1, "abc", "9" * 30, ""):
        assert shown(operator, TRADES, client=value) == [], value


def test_an_auctions_trades_link_shows_exactly_its_trades(operator, ledger):
    trades = ledger.trades(6)
    # a trade of another venue event whose reference starts alike is not one of them
    other = ledger.trade(99, 0, 1, 0, venue_ref=ledger.auctions[0].ref + "0")
    auction = ledger.auctions[0]
    page = operator.get(reverse("admin:matching_auction_change", args=[auction.pk])).content.decode()
    assert shown(operator, link(page, "trades")) == [trades[n].pk for n in (4, 2, 0)]
    assert shown(operator, TRADES, venue_ref=other.venue_ref) == [other.pk]
    assert shown(operator, TRADES, venue_ref=auction.ref, client=ledger.clients[2].pk) == [trades[n].pk for n in (2,)]
    listed = operator.get(reverse("admin:matching_auction_changelist")).content.decode()
    assert f"venue_ref={auction.ref}" in listed


def test_the_list_is_newest_first_in_plain_digits_and_read_only(operator, ledger):
    trades = ledger.trades(3)
    assert shown(operator, TRADES) == [t.pk for t in reversed(trades)]
    text = operator.get(TRADES).content.decode()
    assert ">2002.5<" in text and ">0.25<" in text and "2002.500" not in text
    trade = trades[0]
    assert operator.get(reverse("admin:clearing_trade_add")).status_code == 403
    assert operator.post(reverse("admin:clearing_trade_change", args=[trade.pk]), {"price": "1"}).status_code == 403
    assert operator.post(reverse("admin:clearing_trade_delete", args=[trade.pk]), {"post": "yes"}).status_code == 403
    assert Trade.objects.get(pk=trade.pk).price == D("2000.5")


def test_the_list_costs_the_same_queries_for_5_trades_as_for_50(operator, ledger):
    ledger.trades(5)

    def queries(**params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(TRADES, {"all": "", **params}).status_code == 200
        return len(captured)

    few = queries(), queries(client=ledger.clients[0].pk), queries(venue_ref=ledger.auctions[1].ref)
    ledger.trades(45, start=5)
    assert len(operator.get(TRADES).context["cl"].result_list) == 50
    assert (queries(), queries(client=ledger.clients[0].pk), queries(venue_ref=ledger.auctions[1].ref)) == few


def test_staff_with_the_view_permission_see_the_ledger_and_others_are_refused(ledger):
    ledger.trades(2)
    staff = browser_for("staff", staff=True, perms=["view_trade"])
    assert staff.get(TRADES).status_code == 200
    for refused in (browser_for("trader"), BrowserClient()):  # a signed-in user who is not staff; nobody
        response = refused.get(TRADES)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert browser_for("clerk", staff=True).get(TRADES).status_code == 403  # staff without the permission
