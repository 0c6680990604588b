"""The served application in-process (``ccp.asgi.application``): a request's synchronous code (Django's
signal, the middleware, the view, the rendering, the close) runs in one call on its request thread, and
an order's answer waits for its result in the event loop, then one more call re-renders it with the
headers the middleware gave the answer."""

import asyncio
import concurrent.futures
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection

from ccp.accounts.models import ApiToken
from ccp.accounts.services import token_hash
from ccp.asgi import application
from ccp.clock import utcnow
from ccp.orders.models import Order
from ccp.orders.services import order_validate
from tests.factories import ContractFactory, FundLockFactory

pytestmark = pytest.mark.django_db(transaction=True)


def asgi_request(method: str, path: str, body: bytes = b"", token: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request through the ASGI application, in a new event loop."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    answer: dict = {"body": b""}

    async def run():
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(60)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            else:
                answer["body"] += message.get("body", b"")

        await application(scope, receive, send)

    asyncio.run(run())
    return answer["status"], answer["headers"], answer["body"]


@pytest.fixture
def hand_overs(monkeypatch) -> list[str]:
    """The names of the threads each hand-over to a thread pool goes to, while the test runs."""
    names: list[str] = []
    submit = concurrent.futures.ThreadPoolExecutor.submit

    def counted(self, *args, **kwargs):
        names.append(self._thread_name_prefix)
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", counted)
    return names


@pytest.fixture
def trader():
    contract = ContractFactory()
    fund = FundLockFactory(currency=contract.collateral, fundlock=D("1000"))
    token = f"threads-{fund.client.pk}-" + "x" * 20
    now = utcnow()
    ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=fund.client, created_at=now,
                            expires_at=now + timedelta(days=1))
    return token, contract


def test_a_plain_request_runs_on_its_thread_in_one_call(hand_overs):
    status, headers, _ = asgi_request("GET", "/api/v1/ping")
    assert status == 200 and headers["x-frame-options"] == "DENY"  # the middleware ran
    # Django's handler: the request_started signal, the middleware, the response's close, each a call
    assert hand_overs == ["ccp-request"]


def test_an_order_answered_after_its_result_keeps_the_middleware_headers(settings, trader, hand_overs):
    settings.CCP_ORDER_WAIT_MS = 10000
    token, contract = trader

    def validate_when_stored():  # the worker's part: validate the order once it is stored
        try:
            deadline = time.monotonic() + 10
            while not Order.objects.filter(client_order_id="after-wait").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            order_validate(order_id=Order.objects.get(client_order_id="after-wait").pk, now=utcnow())
        finally:
            connection.close()

    worker = threading.Thread(target=validate_when_stored)
    worker.start()
    body = json.dumps({"client_order_id": "after-wait", "contract": contract.symbol, "side": "buy", "price": "100",
                       "quantity": "1"}).encode()
    try:
        status, headers, answer = asgi_request("POST", "/api/v1/orders", body, token)
    finally:
        worker.join(15)
    order = json.loads(answer)
    assert (status, order["state"], order["order_value"]) == (201, "accepted", "100")
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["content-type"] == "application/json" and int(headers["content-length"]) == len(answer)
    # one call for the request, one to re-render it after the wait (Django's handler: five or more)
    assert hand_overs == ["ccp-request", "ccp-request"]
