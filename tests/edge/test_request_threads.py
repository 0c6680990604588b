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
from rest_framework.renderers import JSONRenderer

from ccp.accounts.models import ApiToken
from ccp.accounts.services import token_hash
from ccp.asgi import application
from ccp.book.services import book_match
from ccp.clock import utcnow
from ccp.orders import services
from ccp.orders.models import Order
from ccp.orders.services import order_validate
from ccp.server import RequestThreads
from tests.book.test_venue import continuous_future, match, send
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
    """Where each hand-over to another thread goes while the test runs: "ccp-request" to a request's thread
    (``RequestThreads.run``), a thread pool's name prefix to one (asgiref's, Django's)."""
    names: list[str] = []
    submit, run = concurrent.futures.ThreadPoolExecutor.submit, RequestThreads.run

    def counted(self, *args, **kwargs):
        names.append(self._thread_name_prefix)
        return submit(self, *args, **kwargs)

    async def counted_run(function, *args):
        names.append("ccp-request")
        return await run(function, *args)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", counted)
    monkeypatch.setattr(RequestThreads, "run", staticmethod(counted_run))
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
    # the signal carried the order as committed: rendered in the event loop, no second call on a thread
    assert hand_overs == ["ccp-request"]
    # and it is the order as a read of it gives it
    status, _, again = asgi_request("GET", f"/api/v1/orders/{order['id']}", token=token)
    detail = json.loads(again)
    assert status == 200 and {k: v for k, v in order.items() if detail[k] != v} == {}


def _answered_after(token: str, client_order_id: str, body: dict, work) -> tuple[int, bytes]:
    """POST /orders with ``body`` while a worker thread runs ``work(order_id)`` once the order is stored."""
    def worker_part():
        try:
            deadline = time.monotonic() + 10
            while not Order.objects.filter(client_order_id=client_order_id).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            work(Order.objects.get(client_order_id=client_order_id).pk)
        finally:
            connection.close()

    worker = threading.Thread(target=worker_part)
    worker.start()
    try:
        status, _, answer = asgi_request("POST", "/api/v1/orders", json.dumps(
            {"client_order_id": client_order_id, **body}).encode(), token)
    finally:
        worker.join(15)
    return status, answer


def test_a_continuous_order_is_answered_as_the_matcher_committed_it(settings, trader, hand_overs):
    """The matcher's signal carries the order as its batch committed (filled here, against a resting sell)."""
    settings.CCP_ORDER_WAIT_MS = 10000
    token, _ = trader
    contract = continuous_future()  # the same collateral as the trader's fund lock
    seller = FundLockFactory(currency=contract.collateral, fundlock=D("1000")).client
    send(seller, contract, "sell", "100", "2")
    match(contract)
    hand_overs.clear()
    status, answer = _answered_after(token, "taker", {"contract": contract.symbol, "side": "buy", "price": "100",
                                                      "quantity": "1"},
                                     lambda _: book_match(contract_id=contract.pk, now=utcnow()))
    order = json.loads(answer)
    assert (status, order["state"], order["filled_quantity"], order["average_fill_price"]) == (
        201, "filled", "1", "100")
    assert answer == JSONRenderer().render(order)  # the signal's bytes, as rendering the order gives them
    assert hand_overs == ["ccp-request"]
    status, _, again = asgi_request("GET", f"/api/v1/orders/{order['id']}", token=token)
    detail = json.loads(again)
    assert status == 200 and {k: v for k, v in order.items() if detail[k] != v} == {}


def test_a_signal_without_the_order_reads_it_again(settings, trader, hand_overs, monkeypatch):
    """A signal that says only "look again" (the order not sent with it): the answer reads the order on the
    request's thread."""
    settings.CCP_ORDER_WAIT_MS = 10000
    token, contract = trader
    signal = services.order_results_signal
    monkeypatch.setattr(services, "order_results_signal", lambda order_ids, orders=(): signal(order_ids))
    status, answer = _answered_after(token, "bare", {"contract": contract.symbol, "side": "buy", "price": "100",
                                                     "quantity": "1"},
                                     lambda order_id: order_validate(order_id=order_id, now=utcnow()))
    assert (status, json.loads(answer)["state"]) == (201, "accepted")
    assert hand_overs == ["ccp-request", "ccp-request"]


def test_a_batch_is_answered_from_the_signals_in_the_event_loop(settings, trader, hand_overs):
    """Two orders in one batch, validated by the worker: both answered 201 as committed, without a second call
    on a thread; a refused one keeps its error, in its place."""
    settings.CCP_ORDER_WAIT_MS = 10000
    token, contract = trader
    body = {"orders": [{"client_order_id": f"batch-{n}", "contract": contract.symbol, "side": "buy", "price": "100",
                        "quantity": "1"} for n in range(2)]
            + [{"client_order_id": "batch-bad", "contract": "NOPE", "side": "buy", "price": "1", "quantity": "1"}]}

    def validate_when_stored():
        try:
            deadline = time.monotonic() + 10
            while Order.objects.filter(client_order_id__startswith="batch-").count() < 2 and (
                    time.monotonic() < deadline):
                time.sleep(0.02)
            for order in Order.objects.filter(client_order_id__startswith="batch-").order_by("pk"):
                order_validate(order_id=order.pk, now=utcnow())
        finally:
            connection.close()

    worker = threading.Thread(target=validate_when_stored)
    worker.start()
    try:
        status, _, answer = asgi_request("POST", "/api/v1/orders/batch", json.dumps(body).encode(), token)
    finally:
        worker.join(15)
    results = json.loads(answer)["results"]
    assert status == 200 and [r["status"] for r in results] == [201, 201, 400]
    assert answer == JSONRenderer().render({"results": results})  # the signals' bytes spliced in
    assert [(r["order"]["state"], r["order"]["order_value"]) for r in results[:2]] == [("accepted", "100")] * 2
    assert results[2]["error"]["code"] == "unknown_contract"
    assert hand_overs == ["ccp-request"]


def test_a_streamed_answer_is_iterated_on_its_requests_thread(hand_overs):
    from django.conf import settings

    status, headers, body = asgi_request("GET", "/static/admin/css/base.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert body == (settings.STATIC_ROOT / "admin" / "css" / "base.css").read_bytes()
    # Django reads a streamed body through asgiref: on the request's thread, not on a pool of asgiref's own
    assert set(hand_overs) == {"ccp-request"}


def test_a_path_without_arguments_is_resolved_once(trader, monkeypatch):
    """The URL patterns are walked once for a path without arguments (its match kept by the process), at each
    request for a path with one; each request still gets its own view and answer."""
    from django.urls import URLResolver, get_resolver

    from ccp.asgi import ProcessThreadHandler

    token, contract = trader
    walked: list[str] = []
    resolve = URLResolver.resolve

    def counted(self, path):
        if self is get_resolver():
            walked.append(path)
        return resolve(self, path)

    monkeypatch.setattr(ProcessThreadHandler, "_resolved", {})
    monkeypatch.setattr(URLResolver, "resolve", counted)
    answers = [asgi_request("GET", "/api/v1/orders", token=token) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200] * 3 and len({body for _, _, body in answers}) == 1
    assert walked == ["/api/v1/orders"]
    status, _, body = asgi_request("POST", "/api/v1/orders", json.dumps(
        {"client_order_id": "resolved", "contract": contract.symbol, "side": "buy", "price": "100",
         "quantity": "1"}).encode(), token)
    assert status == 202
    path = f"/api/v1/orders/{json.loads(body)['id']}"
    for _ in range(2):
        status, _, body = asgi_request("GET", path, token=token)
        assert status == 200 and json.loads(body)["client_order_id"] == "resolved"
    assert walked == ["/api/v1/orders", path, path]
