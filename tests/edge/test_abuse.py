"""Issue 10, class 5 (the API's part): throttles with 429 and Retry-After shared through Redis, a
maximum page size, the admin login lockout, and beat sweeping dead sign-in records."""

import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from eth_account import Account

from ccp.accounts.models import ApiToken, SignInChallenge
from ccp.accounts.services import signin_records_sweep
from ccp.accounts.tasks import signin_records_sweep_task
from ccp.throttling import Rate, hit
from tests.conftest import NOW
from tests.edge.conftest import error_of
from tests.factories import ClientFactory, ContractFactory, FundLockFactory
from tests.processes import REPO

pytestmark = pytest.mark.django_db


def assert_throttled(response, window_s: int = 60) -> int:
    assert response.status_code == 429, response.content
    assert error_of(response.content)["code"] == "throttled"
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= window_s and response.json()["extra"]["retry_after_s"] == retry_after
    return retry_after


@override_settings(CCP_SIGNIN_ALLOW_ANY=True, CCP_THROTTLE_SIGNIN_IP="5/min", CCP_THROTTLE_SIGNIN_ADDRESS="3/min")
def test_nonces_are_throttled_per_address_and_per_ip(client):
    address = Account.create().address
    for _ in range(3):
        assert client.post("/api/v1/auth/nonce", {"address": address}, "application/json").status_code == 201
    assert_throttled(client.post("/api/v1/auth/nonce", {"address": address.lower()}, "application/json"))
    # another address from the same IP: one more, then the IP's limit
    other = Account.create().address
    assert client.post("/api/v1/auth/nonce", {"address": other}, "application/json").status_code == 201
    assert_throttled(client.post("/api/v1/auth/nonce", {"address": other}, "application/json"))
    assert_throttled(client.post("/api/v1/auth/token", {"message": "m", "signature": "0x"}, "application/json"))
    assert SignInChallenge.objects.count() == 4
    # another IP address is not held back by this one
    response = client.post("/api/v1/auth/nonce", {"address": Account.create().address}, "application/json",
                           REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 201


@override_settings(CCP_THROTTLE_ORDERS="4/min")
def test_order_entry_and_cancels_are_throttled_per_client(api_as):
    contract = ContractFactory()
    noisy, quiet = (FundLockFactory(currency=contract.collateral).client for _ in range(2))
    body = {"contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1"}
    for i in range(3):
        response = api_as(noisy).post("/api/v1/orders", {**body, "client_order_id": f"o-{i}"}, format="json")
        assert response.status_code == 202
    assert api_as(noisy).post("/api/v1/orders/999999/cancel").status_code == 404  # counted too
    assert_throttled(api_as(noisy).post("/api/v1/orders", {**body, "client_order_id": "o-9"}, format="json"))
    assert api_as(noisy).get("/api/v1/orders").status_code == 200  # reading is not order entry
    assert api_as(quiet).post("/api/v1/orders", {**body, "client_order_id": "o-1"}, format="json").status_code == 202


@override_settings(CCP_THROTTLE_WITHDRAWALS="2/min")
def test_withdrawals_are_throttled_per_client(api_as):
    api = api_as(ClientFactory())
    for _ in range(2):
        assert api.post("/api/v1/withdrawals", {"client_withdrawal_id": "w", "currency": "NOPE", "amount": "1"},
                        format="json").status_code == 400
    assert_throttled(api.post("/api/v1/withdrawals", {"client_withdrawal_id": "w", "currency": "NOPE", "amount": "1"},
                              format="json"))


def test_counters_are_shared_through_redis_by_every_process():
    window_start = 1_000_020.0  # a multiple of 60: a minute's window starts here
    # another process counts two requests in this window...
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'ccp.settings'; django.setup(); "
            "from ccp.throttling import Rate, hit; "
            f"print([hit('test', 'who', Rate.parse('2/min'), now={window_start} + i) for i in range(2)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "[None, None]"
    # ...so this one's third request in it waits for the window's end
    assert hit("test", "who", Rate.parse("2/min"), now=window_start + 2) == pytest.approx(58)
    assert hit("test", "who", Rate.parse("2/min"), now=window_start + 60) is None  # the next window


@pytest.mark.parametrize(("text", "rate"), [("50/s", Rate(50, 1)), ("10/5min", Rate(10, 300)), ("3/h", Rate(3, 3600)),
                                            ("", None), ("  ", None)])
def test_rates_read_as_documented(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["50", "x/s", "5/week", "-1/s"])
def test_a_bad_rate_is_a_configuration_error(text):
    with pytest.raises(ValueError):
        Rate.parse(text)


@override_settings(CCP_THROTTLE_ADMIN_LOGIN_USER="3/15min", CCP_THROTTLE_ADMIN_LOGIN_IP="100/5min")
def test_the_admin_login_locks_a_user_name_out_after_failures(client, django_user_model):
    django_user_model.objects.create_superuser("operator", password="operator-password")
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "operator", "password": "guess"})
        assert response.status_code == 200  # the form again, with its error
    response = client.post("/admin/login/", {"username": "operator", "password": "operator-password"})
    assert_throttled(response, 900)
    # other addresses do not help: the lockout is per user name
    response = client.post("/admin/login/", {"username": "operator", "password": "operator-password"},
                           REMOTE_ADDR="10.9.9.9")
    assert_throttled(response, 900)


@override_settings(CCP_THROTTLE_ADMIN_LOGIN_IP="2/5min")
def test_the_admin_login_is_throttled_per_ip(client):
    for _ in range(2):
        assert client.post("/admin/login/", {"username": f"u{_}", "password": "x"}).status_code == 200
    assert_throttled(client.post("/admin/login/", {"username": "other", "password": "x"}), 300)


def test_pages_are_capped(api_as):
    api = api_as(ClientFactory())
    assert api.get("/api/v1/contracts?limit=1000").status_code == 200
    response = api.get("/api/v1/contracts?limit=1001")
    assert response.status_code == 400 and "limit" in response.json()["extra"]["fields"]


def test_beat_sweeps_expired_challenges_and_dead_tokens(client):
    holder = ClientFactory()
    live_token, expired_token, revoked_token = (
        ApiToken.objects.create(key_hash=f"{i:064x}", prefix="t", client=holder, created_at=NOW - timedelta(days=20),
                                expires_at=expires, revoked_at=revoked)
        for i, (expires, revoked) in enumerate([(NOW + timedelta(days=1), None),
                                                (NOW - timedelta(days=8), None),
                                                (NOW + timedelta(days=1), NOW - timedelta(days=8))]))
    fresh, stale = (SignInChallenge.objects.create(nonce=f"n{i}" * 8, address=holder.address, message="m",
                                                   issued_at=at - timedelta(minutes=5), expires_at=at)
                    for i, at in enumerate([NOW - timedelta(minutes=30), NOW - timedelta(hours=2)]))
    with time_machine.travel(NOW, tick=False):
        assert signin_records_sweep_task() == {"challenges": 1, "tokens": 2}
        assert signin_records_sweep_task() == {"challenges": 0, "tokens": 0}
    assert list(SignInChallenge.objects.all()) == [fresh]
    assert list(ApiToken.objects.all()) == [live_token]


def test_the_sweep_works_in_bounded_batches():
    holder = ClientFactory()
    SignInChallenge.objects.bulk_create([
        SignInChallenge(nonce=f"nonce{i:012d}", address=holder.address, message="m",
                        issued_at=NOW - timedelta(days=1), expires_at=NOW - timedelta(hours=23)) for i in range(25)])
    assert signin_records_sweep(now=NOW, batch=10, max_batches=2)["challenges"] == 20
    assert signin_records_sweep(now=NOW, batch=10, max_batches=2)["challenges"] == 5
