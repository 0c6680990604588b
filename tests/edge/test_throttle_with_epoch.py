"""A client's order entry count rides with its API token's revocation epoch read (``ccp.throttling.ClientThrottle``,
``ccp.accounts.services.api_token_authenticate``): one Redis round trip for both when the token is served from the
process's cache, and still no request counted that its authentication refuses."""

from datetime import timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.test import override_settings

from ccp.accounts.models import ApiToken
from ccp.accounts.services import api_token_revoke
from ccp.clock import utcnow
from tests.edge.conftest import error_of
from tests.factories import ContractFactory, FundLockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def store() -> redis.Redis:
    return redis.Redis.from_url(settings.CCP_THROTTLE_REDIS_URL)


def counted(store: redis.Redis) -> int:
    return sum(int(store.get(key)) for key in store.scan_iter("ccp:throttle:orders:*"))


def order_poster(api_as):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral).client
    api, serial = api_as(client), iter(range(1000))

    def post():
        return api.post("/api/v1/orders", {"client_order_id": f"o-{next(serial)}", "contract": contract.symbol,
                                           "side": "buy", "price": "100", "quantity": "1"}, format="json")

    return client, post


@override_settings(CCP_THROTTLE_ORDERS="4/min")
def test_a_cached_token_counts_its_order_in_the_epoch_read(api_as, store):
    _, post = order_poster(api_as)
    assert post().status_code == 202  # the token read from the database, the order counted by the throttle
    store.config_resetstat()
    for _ in range(3):
        assert post().status_code == 202
    assert "cmdstat_multi" not in store.info("commandstats")  # not the throttle's own transaction
    assert counted(store) == 4
    response = post()
    assert response.status_code == 429 and error_of(response.content)["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
    assert counted(store) == 5


@override_settings(CCP_THROTTLE_ORDERS="4/min")
def test_the_script_is_loaded_again_when_redis_lost_it(api_as, store):
    _, post = order_poster(api_as)
    assert post().status_code == 202
    assert post().status_code == 202
    store.script_flush()  # as after a restart
    store.config_resetstat()
    assert post().status_code == 202
    assert "cmdstat_multi" not in store.info("commandstats")  # counted by the script, run again
    assert counted(store) == 3


@override_settings(CCP_THROTTLE_ORDERS="4/min")
def test_a_revoked_cached_token_is_refused_and_not_counted(api_as, store):
    client, post = order_poster(api_as)
    assert post().status_code == 202  # the token cached
    api_token_revoke(api_token=ApiToken.objects.get(client=client), now=utcnow())
    response = post()
    assert response.status_code == 401 and error_of(response.content)["code"] == "token_invalid"
    assert counted(store) == 1


@override_settings(CCP_THROTTLE_ORDERS="4/min")
def test_an_expired_cached_token_is_refused_and_not_counted(api_as, store):
    client, post = order_poster(api_as)
    assert post().status_code == 202  # the token cached
    with time_machine.travel(ApiToken.objects.get(client=client).expires_at + timedelta(seconds=1)):
        response = post()
    assert response.status_code == 401 and error_of(response.content)["code"] == "token_expired"
    assert counted(store) == 1


@override_settings(CCP_THROTTLE_ORDERS="")
def test_no_rate_no_count(api_as, store):
    _, post = order_poster(api_as)
    for _ in range(3):
        assert post().status_code == 202
    assert counted(store) == 0
