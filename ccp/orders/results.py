"""An order's result for the request that submitted it: the request waits a short while
(``CCP_ORDER_WAIT_MS``) for the worker's validation and answers with the order as it then is.

The worker signals the orders it validated or matched after its transaction committed (durable before
visible), in one Redis script call per run:

- one message on the channel ``ccp:order-results`` with every order of the run (its id and, when the worker
  has it, its representation as committed: ``order_payload``);
- one Redis list per order, ``ccp:order-result:<id>``, kept ``RESULT_TTL_S`` seconds: the fallback.

Each server process has one subscription to the channel (``ResultsListener``, in its event loop) and keeps
every result it received for ``RECENT_S`` seconds. A request waits on a future in the event loop: no Redis
command of its own. Its result may be published before it starts waiting (the matcher can be quicker than
the request's thread); it is then among the recent ones. A request falls back to the lists (BLPOP in the
event loop) when the subscription was not up, without a break, since before the request began, since only
then is every result published after its insert sure to reach the process.

When the signal carried the order, the answer is rendered from it in the event loop, without a thread or a
query; else the orders are read again. A lost signal (Redis down) costs the wait, not the result: the order
is answered ``received`` and its state follows on the private stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import redis
import redis.asyncio
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

RESULTS_CHANNEL = "ccp:order-results"
RESULT_TTL_S = 10  # the lists serve a request that began before its process was subscribed: seconds at most
RECENT_S = 5.0  # how long a server process keeps the results it received for requests not yet waiting


def result_key(order_id: int) -> str:
    return f"ccp:order-result:{order_id}"


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client of order results and the matchers' queue flags (short timeouts: never blocks a worker)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


# RPUSH each key its value (ARGV[i + 2]) and EXPIRE it in ARGV[1] s, then PUBLISH the run's message (ARGV[2])
# on the results channel: one command for a run's signals, where a pipeline of two commands per order cost the
# matcher about 1 ms of CPU per 100 orders more (redis-py packs and parses each command).
_SIGNAL_LUA = """
for i, key in ipairs(KEYS) do
  redis.call('RPUSH', key, ARGV[i + 2])
  redis.call('EXPIRE', key, ARGV[1])
end
redis.call('PUBLISH', '""" + RESULTS_CHANNEL + """', ARGV[2])
return #KEYS
"""


@functools.cache
def _signal_script():
    return redis_client().register_script(_SIGNAL_LUA)


def order_results_signal(order_ids: Iterable[int], orders: Iterable = (),
                         payloads: Mapping[int, dict] | None = None, texts: Mapping[int, str] | None = None) -> None:
    """Tell the waiting requests, once the caller's transaction commits, that these orders have their
    result (validated: accepted or rejected); ``orders`` (Order objects among them, their contract set) go
    with their representation as they are at the commit (``order_payload``), the others with "look again".
    ``payloads``: some of those representations by order id, when the caller built them already (for its
    stream messages) from the orders as they are at the commit: not built again; ``texts``: some of those
    representations as the signal carries them (``result_json``), built already. Never fails the caller: a
    missed signal costs a wait."""
    ids = list(order_ids)
    if not ids:
        return
    orders = list(orders)

    def signal() -> None:
        from ccp.orders.serializers import order_payload

        built, done = payloads or {}, texts or {}
        sent = {order.pk: done.get(order.pk) or result_json(built.get(order.pk) or order_payload(order))
                for order in orders}
        results_send(ids, [sent.get(order_id, "1") for order_id in ids])

    transaction.on_commit(signal)


def result_json(payload: dict) -> str:
    """An order's representation as its signal carries it: compact JSON (ASCII: ``ensure_ascii``)."""
    return json.dumps(payload, separators=(",", ":"))


def results_send(order_ids: list[int], values: list[str]) -> None:
    """Publish the results of ``order_ids`` (each its order's JSON representation, or "1": read it again) on
    the channel and push each on its list, in one script call. Never fails: a missed signal costs a wait."""
    # one line per order, "<id> <value>": JSON escapes every newline inside a value
    message = "\n".join(f"{order_id} {value}" for order_id, value in zip(order_ids, values, strict=True))
    try:
        _signal_script()(keys=[result_key(order_id) for order_id in order_ids], args=[RESULT_TTL_S, message, *values])
    except redis.RedisError as exc:
        logger.warning("order results not signalled (%s orders), Redis unreachable: %s", len(order_ids), exc)


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_redis() -> redis.asyncio.Redis:
    """One client per event loop (the server has one per process; a test client's request has its own)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    return client


def _result(value: bytes) -> dict | None:
    """A signal's value: the order as committed, or None (read it again)."""
    return json.loads(value) if value.startswith(b"{") else None


def _committed(value: bytes) -> bytes | None:
    """A signal's value: the order's JSON as the worker encoded it at the commit, or None (read it again)."""
    return value if value.startswith(b"{") else None


class _Wait:
    """One request's wait: the orders it still waits for, those it has, and the future its request awaits."""

    __slots__ = ("left", "done", "future")

    def __init__(self, order_ids: set[int], future: asyncio.Future) -> None:
        self.left = order_ids
        self.done: dict[int, bytes] = {}
        self.future = future

    def take(self, order_id: int, value: bytes) -> None:
        if order_id in self.left:
            self.left.discard(order_id)
            self.done[order_id] = value
            if not self.left and not self.future.done():
                self.future.set_result(True)


class ResultsListener:
    """A server process's one subscription to the results channel, in its event loop: every result published
    goes to the requests waiting for it and is kept ``RECENT_S`` seconds for those not yet waiting.

    ``since``: the loop time since which the subscription has been up without a break (None while it is not).
    When it breaks, the requests waiting on it finish their wait on the lists, and it connects again a second
    later. Its client never retries a command by itself: a reconnection behind its back could lose messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.since: float | None = None
        self.waits: dict[int, list[_Wait]] = {}
        self.recent: dict[int, tuple[float, bytes]] = {}
        self.arrivals: deque[tuple[float, list[int]]] = deque()
        self.task = loop.create_task(self.listen())

    def covers(self, began: float) -> bool:
        """Whether every result published after ``began`` (loop time) reached this process, or will."""
        return self.since is not None and self.since <= began and self.loop.time() - began < RECENT_S

    async def listen(self) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1,
                                                  retry=Retry(NoBackoff(), 0), client_name=listener_name())
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(RESULTS_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self.since = self.loop.time()  # Redis subscribed us before it answered
                    elif message["type"] == "message":
                        try:
                            self.received(message["data"])
                        except ValueError:  # not a results message: only the workers publish there
                            logger.warning("order results channel: unreadable message %r", message["data"][:80])
            except (redis.RedisError, OSError) as exc:
                logger.warning("order results channel lost, requests wait on the lists: %s", exc)
            finally:
                self.broken()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(1)

    def received(self, data: bytes) -> None:
        now = self.loop.time()
        ids = []
        for line in data.split(b"\n"):
            head, _, value = line.partition(b" ")
            order_id = int(head)
            ids.append(order_id)
            self.recent[order_id] = (now, value)
            for wait in self.waits.pop(order_id, ()):
                wait.take(order_id, value)
        self.arrivals.append((now, ids))
        horizon = now - RECENT_S
        while self.arrivals[0][0] < horizon:
            for order_id in self.arrivals.popleft()[1]:
                kept = self.recent.get(order_id)
                if kept is not None and kept[0] < horizon:
                    del self.recent[order_id]

    def broken(self) -> None:
        self.since = None
        self.recent.clear()
        self.arrivals.clear()
        for waits in self.waits.values():
            for wait in waits:
                if not wait.future.done():
                    wait.future.set_result(False)  # finished on the lists
        self.waits.clear()

    async def wait(self, order_ids: Iterable[int], timeout_s: float) -> tuple[dict[int, bytes], set[int], bool]:
        """The results of ``order_ids`` received within ``timeout_s``; the ids still waited for; whether the
        subscription held all along (False: those left must be waited for on the lists)."""
        wait = _Wait(set(order_ids), self.loop.create_future())
        for order_id in list(wait.left):
            kept = self.recent.get(order_id)
            if kept is not None:
                wait.take(order_id, kept[1])
        if not wait.left:
            return wait.done, wait.left, True
        for order_id in wait.left:
            self.waits.setdefault(order_id, []).append(wait)
        timer = self.loop.call_later(timeout_s, lambda: wait.future.done() or wait.future.set_result(True))
        try:
            held = await wait.future
        finally:
            timer.cancel()
            for order_id in wait.left:
                waits = self.waits.get(order_id)
                if waits is not None and wait in waits:
                    waits.remove(wait)
                    if not waits:
                        del self.waits[order_id]
        return wait.done, wait.left, held


def listener_name() -> str:
    """The name a server process's subscription has in Redis' CLIENT LIST."""
    return f"ccp-order-results-{os.getpid()}"


_listeners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def results_listener() -> ResultsListener:
    """The running event loop's listener, started on first use (a server process has one loop)."""
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None:
        listener = _listeners[loop] = ResultsListener(loop)
    return listener


async def order_results_wait(order_ids: Iterable[int], *, timeout_s: float, began: float | None = None,
                             as_sent: bool = False) -> dict[int, dict | bytes | None]:
    """The orders among ``order_ids`` whose result was signalled within ``timeout_s`` (all of them,
    or those that made it before the deadline), each with its representation when the signal carried it
    (else None: read it again); ``as_sent``: that representation as the JSON the worker encoded, not decoded.

    ``began``: the loop time at which the request began, before its orders were stored. When the process's
    subscription covers it (``ResultsListener.covers``) the results come from the subscription, else (or when
    it breaks during the wait) from the lists."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    order_ids = list(order_ids)
    listener = results_listener()
    value_of = _committed if as_sent else _result
    if began is not None and listener.covers(began):
        taken, order_ids, held = await listener.wait(order_ids, timeout_s)
        done = {order_id: value_of(value) for order_id, value in taken.items()}
        if held or not order_ids:
            return done
        return done | await _lists_wait(order_ids, deadline, value_of)
    return await _lists_wait(order_ids, deadline, value_of)


async def _lists_wait(order_ids: Iterable[int], deadline: float,
                      value_of: Callable[[bytes], dict | bytes | None] = _result) -> dict[int, dict | bytes | None]:
    """The wait on the orders' lists until ``deadline`` (loop time).

    A BLPOP pops one signal: after each, the other signals already there are popped in one round trip (an
    LPOP of each key still waited for), so a batch whose orders a matcher signals together costs a few
    round trips, not one BLPOP of up to 100 keys per order (about 15 ms of the server's CPU per batch of 100)."""
    loop = asyncio.get_running_loop()
    waiting = {result_key(order_id): order_id for order_id in order_ids}
    done: dict[int, dict | bytes | None] = {}

    def take(key: str, value: bytes) -> None:
        done[waiting.pop(key)] = value_of(value)

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
