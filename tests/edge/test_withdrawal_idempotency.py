"""Issue 10, class 6: a retried withdrawal reserves its amount once. The client names each withdrawal
(client_withdrawal_id) as it names orders: the same body again is the stored withdrawal, a different
body under the same id is a 409."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connections
from django.test import override_settings

from ccp.accounts.models import FundLock
from ccp.settlement.models import CashMovement, Withdrawal
from tests.factories import CurrencyFactory, FundLockFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fund():
    usdc = CurrencyFactory(symbol="USDC", decimals=6, token_address="0x" + "ab" * 20)
    CurrencyFactory(symbol="USDT", decimals=6, token_address="0x" + "cd" * 20)
    return FundLockFactory(currency=usdc, fundlock=D("1000"))


def ask(api, withdrawal_id="w-1", amount="600", currency="USDC"):
    return api.post("/api/v1/withdrawals", {"client_withdrawal_id": withdrawal_id, "currency": currency,
                                            "amount": amount}, format="json")


def test_a_retried_withdrawal_is_the_stored_one(api_as, fund):
    api = api_as(fund.client)
    first = ask(api)
    assert first.status_code == 201
    again = ask(api)  # the 600 left the available balance: a new ask would not fit, the retry is the same one
    assert again.status_code == 200 and again.json() == first.json()
    fund.refresh_from_db()
    assert fund.settle_value == D("-600") and fund.available == D("400")
    assert Withdrawal.objects.count() == 1 and CashMovement.objects.count() == 1


@pytest.mark.parametrize("change", [{"amount": "100"}, {"currency": "USDT"}])
def test_another_withdrawal_under_a_used_id_is_refused(api_as, fund, change):
    api = api_as(fund.client)
    first = ask(api).json()
    response = ask(api, **change)
    assert response.status_code == 409 and response.json()["code"] == "client_withdrawal_id_reused"
    assert response.json()["extra"]["withdrawal_id"] == first["id"]
    assert Withdrawal.objects.count() == 1 and FundLock.objects.get(pk=fund.pk).settle_value == D("-600")


def test_ids_are_per_client(api_as, fund):
    other = FundLockFactory(currency=fund.currency, fundlock=D("1000"))
    assert ask(api_as(fund.client)).status_code == 201
    assert ask(api_as(other.client)).status_code == 201
    assert Withdrawal.objects.count() == 2


def test_the_id_is_required_and_must_be_a_plain_string(api_as, fund):
    api = api_as(fund.client)
    for body in ({"currency": "USDC", "amount": "1"}, {"client_withdrawal_id": 7, "currency": "USDC", "amount": "1"},
                 {"client_withdrawal_id": "has space", "currency": "USDC", "amount": "1"}):
        response = api.post("/api/v1/withdrawals", body, format="json")
        assert response.status_code == 400 and "client_withdrawal_id" in response.json()["extra"]["fields"]
    assert not Withdrawal.objects.exists()


@override_settings(CCP_THROTTLE_WITHDRAWALS="")
def test_the_same_id_sent_twenty_times_at_once_reserves_once(api_as, fund):
    api_as(fund.client)  # the token, before the threads start

    def send(_):
        try:
            return ask(api_as(fund.client), amount="60").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(send, range(20)))
    assert sorted(statuses) == [200] * 19 + [201]
    assert Withdrawal.objects.count() == 1
    assert FundLock.objects.get(pk=fund.pk).settle_value == D("-60")
