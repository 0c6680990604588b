"""Auction reservations in the webconsole: an operator chasing a client's low available collateral finds
the reservation an auction still holds between its close and its apply (its fund lock's "of which
auctions hold" links to it; filter "released: no", the auction's state beside it; search by the client's
address or id); each auction's page counts its reservations, the bound ones and the total per currency,
and links to them. Read-only, one query for the rows."""

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ccp.matching.models import AuctionReservation
from ccp.matching.services import auction_apply
from tests.clearing.test_trade_admin import browser_for, link
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, FundLockFactory, PairFactory
from tests.matching.netting import auction_run, available_set, place, position_open

pytestmark = pytest.mark.django_db

RESERVATIONS = reverse("admin:matching_auctionreservation_changelist")


def funded(currency):
    client = ClientFactory()
    FundLockFactory(client=client, currency=currency, fundlock=D("1000000"))
    return client


def short_calls(pair, availables: list[str], *, apply: bool = False, now=NOW + timedelta(seconds=20)):
    """A trader per amount available, each long the 110000 call and selling the 100000 call (holds 6000,
    netted; stand-alone 46000) with nobody buying, then the pair's auction at ``now``: the traders and the
    auction. Each position comes from an auction of its own, in the minutes before."""
    c100, c110 = ContractFactory(pair=pair), ContractFactory(pair=pair, strike_px=D("110000"))
    traders = [funded(c100.collateral) for _ in availables]
    for n, trader in enumerate(traders):
        position_open(trader, c110, "1", "1000", now=NOW - timedelta(minutes=len(traders) - n))
    for trader, amount in zip(traders, availables, strict=True):
        available_set(trader, c100.collateral, amount)
        place(trader, c100, "sell", "4000", "1")
    return traders, auction_run(pair, now, apply=apply)


class Reserved:
    """Two auctions of one pair, made by the services: ``applied`` (its reservations released) and
    ``pending`` (solved, not applied: its reservations still held). ``free`` and ``tight`` each sell a call
    (holds 6000, netted against a long call; stand-alone 46000) with nobody buying: ``free`` has 100000
    available (reserved 40000), ``tight`` 10000 (reserved the 4000 it has left: bound)."""

    def __init__(self):
        pair = PairFactory()
        self.currency = pair.quote
        (self.free, self.tight), self.applied = short_calls(pair, ["100000", "10000"], apply=True,
                                                            now=NOW + timedelta(seconds=10))
        self.pending = auction_run(pair, NOW + timedelta(seconds=20), apply=False)

    def of(self, auction, client) -> AuctionReservation:
        return AuctionReservation.objects.get(auction=auction, client=client)


@pytest.fixture
def reserved() -> Reserved:
    return Reserved()


@pytest.fixture
def operator():
    """Staff who may look at auctions and reservations, and nothing else."""
    return browser_for("clerk", staff=True, perms=["view_auction", "view_auctionreservation"])


def shown(browser, url: str = RESERVATIONS, **params) -> list[int]:
    response = browser.get(url, params)
    assert response.status_code == 200, (url, params)
    return [row.pk for row in response.context["cl"].result_list]


def test_the_services_rows_are_as_the_pages_expect(reserved):
    for auction, released in ((reserved.applied, True), (reserved.pending, False)):
        free, tight = reserved.of(auction, reserved.free), reserved.of(auction, reserved.tight)
        assert (free.amount, free.bound, tight.amount, tight.bound) == (D("40000"), False, D("4000"), True)
        assert (free.released_at is not None, tight.released_at is not None) == (released, released)


def test_not_released_finds_what_an_auction_between_close_and_apply_holds(operator, reserved):
    held = [reserved.of(reserved.pending, c).pk for c in (reserved.tight, reserved.free)]
    released = [reserved.of(reserved.applied, c).pk for c in (reserved.tight, reserved.free)]
    assert sorted(shown(operator, released="no")) == sorted(held)
    assert sorted(shown(operator, released="yes")) == sorted(released)
    assert shown(operator) == sorted(held + released, reverse=True)  # newest first
    text = operator.get(RESERVATIONS, {"released": "no"}).content.decode()
    assert re.findall(r'<td class="field-auction_state">(.*?)</td>', text) == ["solved"] * 2
    assert ">40000<" in text and ">4000<" in text and ">46000<" in text  # plain digits
    assert reverse("admin:matching_auction_change", args=[reserved.pending.pk]) in text


def test_filters_on_bound_currency_auction_and_its_state(operator, reserved):
    tight = [reserved.of(a, reserved.tight).pk for a in (reserved.pending, reserved.applied)]
    assert shown(operator, bound__exact="1") == tight
    assert len(shown(operator, currency__id__exact=reserved.currency.pk)) == 4
    assert shown(operator, currency__id__exact=reserved.currency.pk + 1000) == []
    assert shown(operator, auction__state__exact="solved", bound__exact="0") == [
        reserved.of(reserved.pending, reserved.free).pk]
    assert sorted(shown(operator, auction=reserved.applied.pk)) == sorted(
        reserved.of(reserved.applied, c).pk for c in (reserved.free, reserved.tight))
    for value in (reserved.pending.pk + 1000, "abc", "9" * 30):  # an unknown auction selects nothing
        assert shown(operator, auction=value) == [], value


def test_search_by_the_clients_address_as_pasted_or_its_id(operator, reserved):
    tight = [reserved.of(a, reserved.tight).pk for a in (reserved.pending, reserved.applied)]
    assert shown(operator, q=reserved.tight.checksum_address) == tight
    assert shown(operator, q=str(reserved.tight.pk)) == tight
    assert shown(operator, q=f" {reserved.tight.pk} ", released="no") == tight[:1]
    assert shown(operator, q=reserved.free.address[2:12].upper()) == [reserved.of(a, reserved.free).pk
                                                                      for a in (reserved.pending, reserved.applied)]
    for nobody in ("9" * 30, "0x" + "0" * 40, "xyz", str(max(reserved.free.pk, reserved.tight.pk) + 1000)):
        assert shown(operator, q=nobody) == [], nobody


def test_the_auction_page_counts_its_reservations_and_links_to_them(operator, reserved):
    for auction, still_held in ((reserved.pending, "44000"), (reserved.applied, "0")):
        page = operator.get(reverse("admin:matching_auction_change", args=[auction.pk]))
        assert page.status_code == 200
        text = page.content.decode()
        usdc = reserved.currency.symbol
        assert f"2 reservations</a> (1 bound): 44000 {usdc} reserved, {still_held} still held" in text
        assert sorted(shown(operator, link(text, "2 reservations"))) == sorted(
            r.pk for r in AuctionReservation.objects.filter(auction=auction))
    nothing = auction_run(PairFactory(base__symbol="ETH"), NOW)  # no orders: no reservation
    assert ">none<" in operator.get(reverse("admin:matching_auction_change", args=[nothing.pk])).content.decode()


def test_a_fund_lock_shows_what_auctions_hold_of_its_order_value_and_links_to_it(reserved):
    superuser = browser_for("operator", staff=True, superuser=True)
    fund_locks = reverse("admin:accounts_fundlock_changelist")
    for client, amount in ((reserved.tight, "4000"), (reserved.free, "40000")):
        pending = [reserved.of(reserved.pending, client).pk]
        text = superuser.get(fund_locks, {"q": client.address}).content.decode()
        assert shown(superuser, link(text, amount)) == pending
        text = superuser.get(reverse("admin:accounts_client_change", args=[client.pk])).content.decode()
        assert shown(superuser, link(text, amount)) == pending
    auction_apply(auction_id=reserved.pending.pk, now=NOW + timedelta(seconds=21))
    text = superuser.get(fund_locks, {"q": reserved.tight.address}).content.decode()
    assert '<td class="field-auction_holds">-</td>' in text


def test_a_reservations_page_names_its_auction_and_nothing_can_be_changed(operator, reserved):
    reservation = reserved.of(reserved.pending, reserved.tight)
    page = operator.get(reverse("admin:matching_auctionreservation_change", args=[reservation.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "solved" in text and reserved.tight.checksum_address in text
    superuser = browser_for("operator", staff=True, superuser=True)
    for browser in (operator, superuser):
        assert browser.get(reverse("admin:matching_auctionreservation_add")).status_code == 403
        change = reverse("admin:matching_auctionreservation_change", args=[reservation.pk])
        assert browser.post(change, {"amount": "0", "released_at": "2026-11-21 09:30:00"}).status_code == 403
        delete = reverse("admin:matching_auctionreservation_delete", args=[reservation.pk])
        assert browser.post(delete, {"post": "yes"}).status_code == 403
    reservation.refresh_from_db()
    assert (reservation.amount, reservation.released_at) == (D("4000"), None)
    assert browser_for("trader").get(RESERVATIONS).status_code == 302  # not staff: to the login page
    assert browser_for("teller", staff=True).get(RESERVATIONS).status_code == 403  # staff without the permission


def queries(browser, url: str, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert browser.get(url, params).status_code == 200
    return [q["sql"] for q in captured]


def test_the_list_loads_its_rows_in_one_query_without_the_auctions_documents(operator, reserved):
    superuser = browser_for("operator", staff=True, superuser=True)
    fund_locks = reverse("admin:accounts_fundlock_changelist")
    few = queries(operator, RESERVATIONS, released="no")
    rows = [q for q in few if 'FROM "matching_auctionreservation"' in q and "COUNT(" not in q]
    assert len(rows) == 1 and '"matching_auction"."input_document"' not in rows[0]
    few_fund_locks = queries(superuser, fund_locks)
    more, _ = short_calls(PairFactory(base__symbol="ETH"), ["100000"] * 3)  # another pair's auction, 3 more held
    assert len(shown(operator, released="no")) == 2 + len(more)
    assert len(queries(operator, RESERVATIONS, released="no")) == len(few)
    assert len(queries(superuser, fund_locks)) == len(few_fund_locks)
