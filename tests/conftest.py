import contextlib
from datetime import UTC, datetime

import pytest

# A fixed, aware UTC instant; services take `now` from their caller.
NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def throttle_counters_reset():
    """Each test starts with no request counted by the throttles (they share Redis across tests)."""
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(settings.CCP_THROTTLE_REDIS_URL, socket_connect_timeout=0.5).flushdb()
    except redis.RedisError:
        pass  # no Redis for this test: the throttles let requests through


@pytest.fixture(autouse=True)
def order_wait_off(settings):
    """In-process requests answer order entry at once (no worker runs beside them to wait for; the
    wait is tested against a served process with a worker: tests/edge/test_order_result.py)."""
    settings.CCP_ORDER_WAIT_MS = 0


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def api_as():
    """APIClient signed in as a client, with a real API token (as wallet sign-in issues it)."""
    from datetime import timedelta

    from rest_framework.test import APIClient

    from ccp.accounts.models import ApiToken
    from ccp.accounts.services import token_hash
    from ccp.clock import utcnow

    def _api_as(client) -> APIClient:
        token = f"test-token-{client.pk}"
        now = utcnow()
        ApiToken.objects.get_or_create(key_hash=token_hash(token), defaults={
            "prefix": token[:8], "client": client, "created_at": now, "expires_at": now + timedelta(days=1)})
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return api

    return _api_as


@pytest.fixture
def eager_tasks(django_capture_on_commit_callbacks):
    """``with eager_tasks():`` runs the block's on_commit callbacks at its end, and Celery tasks in-process."""
    from celery_app import app

    @contextlib.contextmanager
    def _eager():
        app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                yield
        finally:
            app.conf.task_always_eager = False

    return _eager


@pytest.fixture
def children(tmp_path):
    """Start real child processes (daphne, Celery) against the test database; stopped at teardown."""
    from tests.processes import Children

    started = Children(tmp_path)
    yield started
    started.stop()
