"""An order's result for the request that submitted it: the request waits a short while
(``CCP_ORDER_WAIT_MS``) for the worker's validation and answers with the order as it then is.

The worker signals each order it validated after its transaction committed (durable before
visible): one Redis list per order, ``ccp:order-result:<id>``, kept ``RESULT_TTL_S`` seconds, so a
signal sent before the request started waiting is not lost. The request waits with BLPOP in the
server's event loop (other requests of the process go on meanwhile), then re-reads the orders from
the database, unless the signal carried the order as committed (``order_payload``: the matcher and the
validation send it): then the answer is rendered from it in the event loop, without a thread or a query.
A lost signal (Redis down) costs the wait, not the result: the order is answered ``received`` and its
state follows on the private stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping

import redis
import redis.asyncio
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

RESULT_TTL_S = 60


def result_key(order_id: int) -> str:
    return f"ccp:order-result:{order_id}"


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client of order results and the matchers' queue flags (short timeouts: never blocks a worker)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


# RPUSH each key its value (ARGV[i + 1]) and EXPIRE it in ARGV[1] s: one command for a batch's signals, where a
# pipeline of two commands per order cost the matcher about 1 ms of CPU per 100 orders more (redis-py packs
# and parses each command).
_SIGNAL_LUA = """
for i, key in ipairs(KEYS) do
  redis.call('RPUSH', key, ARGV[i + 1])
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""


@functools.cache
def _signal_script():
    return redis_client().register_script(_SIGNAL_LUA)


def order_results_signal(order_ids: Iterable[int], orders: Iterable = (),
                         payloads: Mapping[int, dict] | None = None) -> None:
    """Tell the waiting requests, once the caller's transaction commits, that these orders have their
    result (validated: accepted or rejected); ``orders`` (Order objects among them, their contract set) go
    with their representation as they are at the commit (``order_payload``), the others with "look again".
    ``payloads``: some of those representations by order id, when the caller built them already (for its
    stream messages) from the orders as they are at the commit: not built again. Never fails the
    caller: a missed signal costs a wait."""
    ids = list(order_ids)
    if not ids:
        return
    orders = list(orders)

    def signal() -> None:
        from ccp.orders.serializers import order_payload

        built = payloads or {}
        sent = {order.pk: json.dumps(built.get(order.pk) or order_payload(order), separators=(",", ":"))
                for order in orders}
        try:
            _signal_script()(keys=[result_key(order_id) for order_id in ids],
                             args=[RESULT_TTL_S, *(sent.get(order_id, "1") for order_id in ids)])
        except redis.RedisError as exc:
            logger.warning("order results not signalled (%s orders), Redis unreachable: %s", len(ids), exc)

    transaction.on_commit(signal)


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_redis() -> redis.asyncio.Redis:
    """One client per event loop (the server has one per process; a test client's request has its own)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    return client


async def order_results_wait(order_ids: Iterable[int], *, timeout_s: float) -> dict[int, dict | None]:
    """The orders among ``order_ids`` whose result was signalled within ``timeout_s`` (all of them,
    or those that made it before the deadline), each with its representation when the signal carried it
    (else None: read it again).

    A BLPOP pops one signal: after each, the other signals already there are popped in one round trip (an
    LPOP of each key still waited for), so a batch whose orders a matcher signals together costs a few
    round trips, not one BLPOP of up to 100 keys per order (about 15 ms of the server's CPU per batch of 100)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = {result_key(order_id): order_id for order_id in order_ids}
    done: dict[int, dict | None] = {}

    def take(key: str, value: bytes) -> None:
        done[waiting.pop(key)] = json.loads(value) if value.startswith(b"{") else None

    try:
        client = _async_redis()
        while waiting:
            left = deadline - loop.time()
            if left <= 0:
                break
            # BLPOP's timeout is in seconds (fractions allowed); the socket must outwait it
            popped = await asyncio.wait_for(client.blpop(list(waiting), timeout=max(left, 0.001)), left + 1)
            if popped is None:
                break
            take(popped[0].decode(), popped[1])
            if waiting:
                keys = list(waiting)
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.lpop(key)
                values = await asyncio.wait_for(pipe.execute(), max(deadline - loop.time(), 0) + 1)
                for key, value in zip(keys, values, strict=True):
                    if value is not None:
                        take(key, value)
    except (redis.RedisError, TimeoutError, OSError) as exc:
        logger.warning("order results not awaited, Redis unreachable: %s", exc)
    return done


def response_replaced(original, data, status: int):
    """A DRF response with ``data`` and ``status``, rendered as ``original`` was negotiated to be."""
    from rest_framework.response import Response

    response = Response(data, status=status)
    response.accepted_renderer = original.accepted_renderer
    response.accepted_media_type = original.accepted_media_type
    response.renderer_context = original.renderer_context
    return response


def order_results_awaited(view: Callable) -> Callable:
    """A view whose response may ask to wait for order results: a response with
    ``awaited_orders = (order_ids, rerender)`` is held by the served application (``ccp.asgi``) up to
    ``CCP_ORDER_WAIT_MS`` in its event loop while the worker validates, after the view, the middleware and
    the request's database connection are done; then ``rerender(finished_ids)`` (run on the request's
    thread) gives the content and status sent. A response that also has ``awaited_render`` (a pure
    function: finished order id -> its representation, to (data, status)) is answered with it, rendered in
    the event loop, when every finished order's signal carried the order. The view itself is unchanged:
    synchronous, one call with the middleware on the request's thread. Elsewhere (the test client) the
    response is sent as it is."""
    return view
