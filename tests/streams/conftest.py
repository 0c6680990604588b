"""WebSocket stream tests: Channels' WebsocketCommunicator against the real Redis channel layer.

Every test is async and transactional (``django_db(transaction=True)``): the consumers read the
database from other threads, and events are published by ``transaction.on_commit`` callbacks,
which only run on a real commit. Database work goes through ``database_sync_to_async``.
"""

import asyncio
import secrets
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from ccp.accounts.models import ApiToken, Client
from ccp.accounts.services import token_hash
from ccp.asgi import application
from ccp.clock import utcnow
from ccp.contracts.models import Contract
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_cancel, order_submit, order_validate
from tests.conftest import NOW

TIMEOUT = 5  # seconds for any one message; a healthy stream answers in milliseconds
QUIET = 0.5  # seconds of silence that count as "nothing was sent"
# Pause before disconnecting. With the settings' channel layer (redis-py 8's default 5 s socket
# timeout, see test_book.py::test_an_idle_subscriber_still_gets_the_next_change), cancelling a
# consumer whose channel-layer receive is still in its first Redis round trips is swallowed and the
# consumer lingers ~5 s; once its receive is parked in BZPOPMIN it stops at once.
SETTLE = 0.2


@pytest_asyncio.fixture(autouse=True)
async def close_thread_connections():
    """Close the database connection of the thread database_sync_to_async runs in (the test's and the
    consumers'), so no session outlives the test database."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def validation_queue(monkeypatch) -> list[int]:
    """Stand-in for the Celery worker: order_submit's after-commit ``order_validate_task.delay``
    records the order id here instead of queueing it; the test validates by calling order_validate."""
    queued: list[int] = []

    class QueueRecorder:
        @staticmethod
        def delay(order_id: int) -> None:
            queued.append(order_id)

    monkeypatch.setattr("ccp.orders.tasks.order_validate_task", QueueRecorder)
    return queued


def order_place(*, client: Client, contract: Contract, side: str, price: str, quantity: str,
                client_order_id: str | None = None, now: datetime = NOW) -> Order:
    """Submit an order (state 'received'); it reaches the book only once order_validate accepts it."""
    request = OrderRequest(client_order_id=client_order_id or secrets.token_hex(8), contract=contract, side=side,
                           kind="limit", price=Decimal(price), quantity=Decimal(quantity))
    order, created = order_submit(client=client, request=request, now=now)
    assert created
    return order


def order_validate_now(*, order: Order, now: datetime = NOW) -> Order:
    """What the Celery worker would do with the queued order id."""
    return order_validate(order_id=order.pk, now=now)


def order_accept(*, order: Order, now: datetime = NOW) -> Order:
    accepted = order_validate_now(order=order, now=now)
    assert accepted.state == "accepted", accepted.reject_reason
    return accepted


def order_place_accepted(**kwargs) -> Order:
    return order_accept(order=order_place(**kwargs))


def order_cancel_now(*, order: Order, now: datetime = NOW) -> Order:
    return order_cancel(client=order.client, order_id=order.pk, now=now)


def api_token_create(client: Client, *, expires_in: timedelta = timedelta(days=1), revoked: bool = False) -> str:
    """A bearer token for ``client`` as sign-in stores it (hash only), relative to the real clock,
    which the private stream checks tokens against."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    created_at = min(now, now + expires_in) - timedelta(hours=1)
    ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=client, created_at=created_at,
                            expires_at=now + expires_in, revoked_at=now if revoked else None)
    return token


@asynccontextmanager
async def ws_connect(path: str, headers: list[tuple[bytes, bytes]] | None = None):
    """An accepted WebSocket to ``path``, disconnected on exit whatever happens."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, f"{path} refused the connection with close code {code}"
    try:
        yield communicator
    finally:
        await asyncio.sleep(SETTLE)
        await communicator.disconnect(timeout=TIMEOUT)


async def ws_refused(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> int | None:
    """The close code of a stream that must refuse the client: the handshake completes (an HTTP 403
    would tell the client nothing), then the stream closes with a code the client can read."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected, f"{path} refused the handshake instead of closing with a code"
        closed = await communicator.receive_output(timeout=TIMEOUT)
    finally:
        await asyncio.sleep(SETTLE)
        await communicator.disconnect(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close", f"{path} sent {closed} instead of closing"
    return closed.get("code")


async def receive_until(communicator: WebsocketCommunicator, predicate: Callable[[dict], bool]) -> list[dict]:
    """Messages up to and including the first that satisfies ``predicate``."""
    seen = []
    while True:
        seen.append(await communicator.receive_json_from(timeout=TIMEOUT))
        if predicate(seen[-1]):
            return seen
