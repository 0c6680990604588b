"""The webconsole's health page: the invariants of ``manage.py ccp_check`` for operators. A system booked
by the services shows every check OK; a fund lock whose lockup mirror was broken in SQL shows that
violation; the chain checks run from a button when a chain is configured, and a node that does not
answer is said on the page. Staff only; linked from the admin index."""

import re
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client as BrowserClient
from django.urls import reverse
from eth_account import Account

from ccp.accounts.models import FundLock
from ccp.settlement.models import ChainContract
from ccp.settlement.services import DEPOSITS_EDGE
from ccp.settlement.tasks import deposits_monitor_task
from ccp.system.models import Edge
from tests.factories import CurrencyFactory, FundLockFactory
from tests.integration.anvil import ANVIL_URL, TRADERS, deposit, mine
from tests.integration.conftest import chain  # noqa: F401 - fixture
from tests.processes import free_port
from tests.system.test_ccp_check import booked  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

HEALTH = reverse("admin_health")
DATABASE_CHECKS = ["movements_not_balanced", "positions_not_balanced", "position_not_journaled",
                   "position_pnl_not_journaled", "position_on_settled_contract", "order_value_wrong",
                   "fund_lock_order_value_wrong", "lockup_wrong", "fund_lock_lockups_wrong", "fund_lock_margin_wrong",
                   "settle_value_wrong", "available_negative"]
CHAIN_CHECKS = ["fund_lock_differs_from_chain", "confirmed_batch_not_applied"]
ROW = re.compile(r'<tr id="check-(\w+)">\s*<td>\w+</td>\s*<td>(.*?)</td>\s*</tr>', re.S)


def browser_for(username: str, **flags) -> BrowserClient:
    get_user_model().objects.create_user(username, password="pass-word-123", **flags)
    browser = BrowserClient()
    browser.login(username=username, password="pass-word-123")
    return browser


@pytest.fixture
def operator() -> BrowserClient:
    return browser_for("operator", is_staff=True)  # staff, no model permissions needed


def checks(browser, **params) -> tuple[dict[str, str], str]:
    """Each check on the page with what it shows (OK, or VIOLATION and the messages), and the page."""
    response = browser.get(HEALTH, params)
    assert response.status_code == 200
    html = response.content.decode()
    return {name: " ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for name, cell in ROW.findall(html)}, html


def test_a_clean_system_shows_every_check_ok(operator, booked):  # noqa: F811
    shown, html = checks(operator)
    assert shown == dict.fromkeys(DATABASE_CHECKS, "OK")
    assert "ccp_check: 12 invariants hold (8 orders, 3 fund locks, " in html and "chain not checked" in html
    assert "VIOLATION" not in html


def test_a_broken_lockup_mirror_shows_as_a_violation(operator, booked):  # noqa: F811
    # given bob's fund lock says one more is locked than his lockups add up to
    bob = booked["bob"]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_fundlock SET lockup_value = lockup_value + 1 WHERE client_id = %s", [bob.pk])
    shown, html = checks(operator)
    fund = FundLock.objects.get(client=bob)
    assert shown.pop("fund_lock_lockups_wrong") == (
        f"VIOLATION client {bob.pk} currency {fund.currency_id}: lockup value 15001, its lockups sum to 15000")
    assert shown == dict.fromkeys(set(DATABASE_CHECKS) - {"fund_lock_lockups_wrong"}, "OK")
    assert "1 violations of 12 invariants" in html


def test_a_long_list_of_violations_is_cut_and_counted(operator, booked, monkeypatch):  # noqa: F811
    monkeypatch.setattr("ccp.system.admin.HEALTH_VIOLATIONS_SHOWN", 2)
    with connection.cursor() as cursor:  # all three fund locks
        cursor.execute("UPDATE accounts_fundlock SET lockup_value = lockup_value + 1")
    shown, html = checks(operator)
    assert shown["fund_lock_lockups_wrong"].count("lockup value") == 2
    assert shown["fund_lock_lockups_wrong"].endswith("and 1 more") and "3 violations of 12 invariants" in html


def test_only_staff_see_it_and_the_index_links_to_it(operator):
    for refused in (browser_for("trader"), BrowserClient()):  # signed in but not staff; nobody
        response = refused.get(HEALTH)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
        assert "invariants" not in response.content.decode()
    index = operator.get(reverse("admin:index"))
    assert index.status_code == 200 and f'<a href="{HEALTH}">Invariants</a>' in index.content.decode()


def test_without_a_chain_there_is_no_chain_button(operator, settings):
    settings.CCP_CHAIN_URL = ""
    shown, html = checks(operator, chain="1")  # asking anyway runs the database's checks only
    assert list(shown) == DATABASE_CHECKS and 'name="chain"' not in html and "No chain configured" in html


def test_a_chain_that_does_not_answer_is_said_with_the_database_checks(operator, settings, now):
    settings.CCP_CHAIN_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ChainContract.objects.create(name="FundLock", address="0x" + "22" * 20, chain_id=31337, deployed_block=0,
                                 created_at=now)
    Edge.objects.create(name=DEPOSITS_EDGE, block_number=5, updated_at=now)
    FundLockFactory(currency=CurrencyFactory(symbol="USDC", decimals=6, token_address="0x" + "33" * 20))
    shown, html = checks(operator)  # the page itself does not ask the node
    assert list(shown) == DATABASE_CHECKS and 'name="chain" value="1"' in html
    shown, html = checks(operator, chain="1")
    assert "Could not read the chain at " + settings.CCP_CHAIN_URL in html
    assert shown == dict.fromkeys(DATABASE_CHECKS, "OK") and "chain not checked" in html


@pytest.mark.skipif(not ANVIL_URL, reason="needs anvil: run bin/test")
def test_the_chain_button_checks_fund_locks_against_the_contract(operator, chain):  # noqa: F811
    w3, token, fund_lock, usdc = chain
    trader = Account.from_key(TRADERS[0]).address
    deposit(w3, token, fund_lock, trader, 250_000_000)  # 250 USDC
    mine(w3, 2)
    assert deposits_monitor_task() == 1
    shown, html = checks(operator, chain="1")
    assert shown == dict.fromkeys(DATABASE_CHECKS + CHAIN_CHECKS, "OK") and "checked against the chain" in html
    assert "1 fund locks on chain" in html
    # when the database drifts from the contract
    FundLock.objects.filter(client__address=trader.lower()).update(fundlock=251)
    shown, _ = checks(operator, chain="1")
    assert shown["fund_lock_differs_from_chain"].startswith("VIOLATION client ")
    assert "fundlock 251, the contract holds 250 at block " in shown["fund_lock_differs_from_chain"]
