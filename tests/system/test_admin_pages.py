"""The webconsole as an operator uses it: every page renders for a superuser, money reads without 18
trailing places, the newest rows come first, withdrawals have their page, and each fund lock shows
what the chain held at the last reconciliation."""

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client as BrowserClient
from django.urls import reverse

from ccp.orders.models import OrderStateHistory
from ccp.prices.models import SpotPrice
from ccp.prices.services import reference_price_initial_set
from ccp.risk.models import Position
from ccp.settlement.models import ChainBalance, Deposit, Withdrawal
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

# A number with a fractional part ending in 0, as "150.000000000000000000" or "2.50" (never "1.5").
TRAILING_ZERO = re.compile(r"(?<![\w.])\d+\.\d*0(?![\w.])")
# What a page shows of its rows: list cells, inline cells, read-only values.
CELLS = re.compile(r'<(?:td|th) class="field-[^"]*">(.*?)</t[dh]>|<div class="readonly">(.*?)</div>', re.S)


def trailing_zeros(html: str) -> list[str]:
    return [number for cell in CELLS.findall(html) for number in TRAILING_ZERO.findall("".join(cell))]


@pytest.fixture
def operator() -> BrowserClient:
    get_user_model().objects.create_superuser("operator", "operator@example.com", "operator-password-1")
    browser = BrowserClient()
    browser.login(username="operator", password="operator-password-1")
    return browser


@pytest.fixture
def books():
    """A client with collateral, an order, a position, a deposit, two withdrawals and a reconciliation."""
    contract = ContractFactory()
    fund = FundLockFactory(currency=contract.collateral, fundlock=D("1000.25"))
    fund.currency.token_address = "0x" + "ef" * 20
    fund.currency.save()
    order = ReceivedOrderFactory(client=fund.client, contract=contract, price=D("150"), quantity=D("2.5"))
    OrderStateHistory.objects.create(order=order, to_state="received", at=NOW)
    Position.objects.create(client=fund.client, contract=contract, quantity=D("-1.5"), updated_at=NOW)
    reference_price_initial_set(contract=contract, price=D("150"), now=NOW)
    SpotPrice.objects.create(pair=contract.pair, source="binance", price=D("100000.10"), observed_at=NOW,
                             fetched_at=NOW)
    Deposit.objects.create(client=fund.client, currency=fund.currency, amount=D("1000.25"), tx_hash="0x" + "ab" * 32,
                           log_index=0, block_number=7, block_hash="0x" + "cd" * 32, recorded_at=NOW)
    for n, amount in enumerate([D("12.5"), D("30")]):
        withdrawal_request(client=fund.client, now=NOW + timedelta(minutes=n),
                           ask=WithdrawalAsk(client_withdrawal_id=f"w-{n}", currency=fund.currency, amount=amount))
    ChainBalance.objects.create(fund_lock=fund, balance=D("1001.75"), fundlock=D("1000.25"), block_number=9,
                                seen_at=NOW)
    return fund


def registered():
    """The ccp apps' admin pages (not Django's or django-celery-beat's own)."""
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model.__module__.startswith("ccp.")]


def page(operator, url: str) -> str:
    response = operator.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_every_list_and_object_page_renders_with_money_in_plain_digits(operator, books):
    """Every list, and every object page's fields and tables (not its title, which is the row's name)."""
    for model, _ in registered():
        opts = model._meta
        text = page(operator, reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert CELLS.search(text) or not model.objects.exists(), opts.model_name
        assert trailing_zeros(text) == [], opts.model_name
        if (obj := model.objects.first()) is not None:
            text = page(operator, reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
            assert trailing_zeros(text) == [], opts.model_name


def test_plurals_read_right_on_the_index(operator):
    text = page(operator, reverse("admin:index"))
    assert "Settlement batches" in text and "batchs" not in text
    assert "Withdrawals" in text


def test_withdrawals_page_lists_the_newest_first_with_its_cash_movement(operator, books):
    text = page(operator, reverse("admin:settlement_withdrawal_changelist"))
    newest, oldest = Withdrawal.objects.order_by("-id")
    assert text.index(f">{newest.pk}<") < text.index(f">{oldest.pk}<")
    assert ">30<" in text and ">12.5<" in text and "w-0" in text and "approved, release on chain pending" in text
    assert reverse("admin:settlement_cashmovement_change", args=[newest.cash_movement_id]) in text


@pytest.mark.parametrize("model_name", ["order", "cashmovement", "withdrawal", "deposit", "orderstatehistory"])
def test_history_lists_put_the_newest_first(operator, books, model_name):
    model_admin = next(a for m, a in registered() if m._meta.model_name == model_name)
    rows = model_admin.get_queryset(None).order_by(*model_admin.get_ordering(None))
    assert model_admin.get_ordering(None)[0].startswith("-")
    assert len(rows) == 0 or rows[0].pk == model_admin.model.objects.order_by("-pk").first().pk


def test_fund_locks_show_the_chain_balance_and_the_drift(operator, books):
    text = page(operator, reverse("admin:accounts_fundlock_changelist"))
    assert ">1001.75<" in text and ">1.5<" in text and "block 9" in text
    client_page = page(operator, reverse("admin:accounts_client_change", args=[books.client_id]))
    assert ">1001.75<" in client_page and ">1.5<" in client_page


def test_a_fund_lock_not_yet_reconciled_shows_a_dash(operator, books):
    ChainBalance.objects.all().delete()
    text = page(operator, reverse("admin:accounts_fundlock_changelist"))
    assert "1001.75" not in text and "block 9" not in text
