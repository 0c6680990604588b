"""API tokens cached per process for a few seconds (``ccp.accounts.services``): a request whose token was
read moments ago costs no database read, and a revocation still takes effect at once."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings

from ccp.accounts import services
from ccp.accounts.models import ApiToken
from ccp.accounts.services import api_token_authenticate, api_token_revoke, token_hash
from ccp.clock import utcnow
from ccp.errors import Unauthorized
from ccp.redisheld import held_connection
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def token() -> str:
    client = ClientFactory()
    token = f"cache-token-{client.pk}"
    now = utcnow()
    ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=client, created_at=now,
                            expires_at=now + timedelta(hours=1))
    return token


def test_a_token_read_moments_ago_is_not_read_again(token, django_assert_num_queries):
    first = api_token_authenticate(token=token, now=utcnow())
    with django_assert_num_queries(0):
        again = api_token_authenticate(token=token, now=utcnow())
    assert (again.pk, again.client.pk, again.client.address) == (first.pk, first.client.pk, first.client.address)
    assert again is not first and again.client is not first.client  # each request its own instances


def test_a_revoked_token_is_refused_at_once(token):
    api_token = api_token_authenticate(token=token, now=utcnow())  # read, and cached
    api_token_revoke(api_token=api_token, now=utcnow())
    with pytest.raises(Unauthorized) as refused:
        api_token_authenticate(token=token, now=utcnow())
    assert refused.value.code == "token_invalid"


def test_a_cached_token_still_expires_on_time(token):
    api_token = api_token_authenticate(token=token, now=utcnow())
    with pytest.raises(Unauthorized) as refused:
        api_token_authenticate(token=token, now=api_token.expires_at)
    assert refused.value.code == "token_expired"


def test_an_unknown_token_is_read_each_time(django_assert_num_queries):
    for _ in range(2):
        with django_assert_num_queries(1), pytest.raises(Unauthorized):
            api_token_authenticate(token="no-such-token", now=utcnow())


def test_a_dropped_epoch_connection_is_made_again(token, django_assert_num_queries):
    """The revocation epoch is read on a connection of the request's thread: when Redis drops it, the next read
    connects again, and a cached token is still served from the cache."""
    api_token_authenticate(token=token, now=utcnow())
    held = held_connection(services._epoch_redis())
    held.send_command("CLIENT", "ID")
    redis.Redis.from_url(settings.CCP_THROTTLE_REDIS_URL).client_kill_filter(_id=held.read_response())
    with django_assert_num_queries(0):
        api_token_authenticate(token=token, now=utcnow())
