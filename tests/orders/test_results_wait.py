"""A request's wait for its orders' results (``order_results_wait``) against the real Redis: every signal
is taken once, those already there together, not one BLPOP per order."""

import asyncio
import json
import secrets

import pytest
import redis.asyncio
from django.db import transaction

from ccp.orders.results import (
    RESULT_TTL_S,
    RESULTS_CHANNEL,
    ResultsListener,
    listener_name,
    order_results_signal,
    order_results_wait,
    redis_client,
    result_key,
    results_listener,
    results_send,
)
from ccp.orders.serializers import order_payload
from tests.factories import ReceivedOrderFactory


@pytest.fixture
def order_ids() -> list[int]:
    base = 10**12 + secrets.randbelow(10**9) * 1000  # keys no other test uses
    ids = list(range(base, base + 100))
    yield ids
    redis_client().delete(*[result_key(i) for i in ids])


def signal(ids: list[int]) -> None:
    pipe = redis_client().pipeline(transaction=False)
    for order_id in ids:
        pipe.rpush(result_key(order_id), json.dumps({"id": order_id}))
        pipe.expire(result_key(order_id), RESULT_TTL_S)
    pipe.execute()


@pytest.fixture
def blpops(monkeypatch) -> list[int]:
    """How many keys each BLPOP of the wait named (the real command runs)."""
    calls: list[int] = []
    blpop = redis.asyncio.Redis.blpop

    def counted(self, keys, timeout=0):
        calls.append(len(keys))
        return blpop(self, keys, timeout)

    monkeypatch.setattr(redis.asyncio.Redis, "blpop", counted)
    return calls


def test_a_batch_signalled_at_once_is_taken_in_one_blpop(order_ids, blpops):
    signal(order_ids)
    done = asyncio.run(order_results_wait(order_ids, timeout_s=2))
    assert done == {i: {"id": i} for i in order_ids}
    assert blpops == [100]
    assert not any(redis_client().exists(result_key(i)) for i in order_ids)  # each signal taken once


def test_signals_in_groups_are_taken_as_they_come(order_ids, blpops):
    async def wait_while_signalled() -> dict:
        waiting = asyncio.ensure_future(order_results_wait(order_ids, timeout_s=5))
        for group in (order_ids[:40], order_ids[40:75], order_ids[75:]):
            await asyncio.sleep(0.05)
            await asyncio.to_thread(signal, group)
        return await waiting

    done = asyncio.run(wait_while_signalled())
    assert done == {i: {"id": i} for i in order_ids}
    assert len(blpops) <= 3 + 1  # one per group (a group may be caught half-written: one more)


def test_orders_not_signalled_within_the_wait_are_left_out(order_ids, blpops):
    signal(order_ids[:30])
    done = asyncio.run(order_results_wait(order_ids, timeout_s=0.3))
    assert done == {i: {"id": i} for i in order_ids[:30]}
    assert blpops[0] == 100 and all(n == 70 for n in blpops[1:])


@pytest.mark.django_db(transaction=True)
def test_signals_sent_at_commit_are_what_the_wait_takes(order_ids):
    order = ReceivedOrderFactory()
    ids = [*order_ids[:99], order.pk]
    with transaction.atomic():
        order_results_signal(ids, [order])
        assert not redis_client().exists(result_key(ids[0]))  # nothing before the commit
    assert all(0 < redis_client().ttl(result_key(i)) <= RESULT_TTL_S for i in ids)
    done = asyncio.run(order_results_wait(ids, timeout_s=2))
    # the order sent with it carries its representation; the others say "look again"
    assert done == {**dict.fromkeys(order_ids[:99]), order.pk: json.loads(json.dumps(order_payload(order)))}
    redis_client().delete(result_key(order.pk))


# The shared subscription: one per server process (event loop), no Redis command of the request's own.

async def listener_up() -> ResultsListener:
    """The running loop's listener once Redis confirmed its subscription."""
    listener = results_listener()
    for _ in range(200):
        if listener.since is not None:
            return listener
        await asyncio.sleep(0.01)
    raise AssertionError("the results channel was not subscribed within 2 s")


def kill_listener() -> None:
    """Close this process's subscription from Redis' side."""
    for client in redis_client().client_list(_type="pubsub"):
        if client["name"] == listener_name():
            redis_client().client_kill_filter(_id=client["id"])


def values(ids: list[int]) -> list[str]:
    return [json.dumps({"id": i}) for i in ids]


def test_results_reach_the_waiting_requests_through_the_subscription(order_ids, blpops):
    async def scenario() -> tuple[dict, dict, dict]:
        listener = await listener_up()
        began = asyncio.get_running_loop().time()
        assert listener.covers(began)
        first = asyncio.ensure_future(order_results_wait(order_ids[:60], timeout_s=5, began=began))
        second = asyncio.ensure_future(order_results_wait(order_ids[50:], timeout_s=5, began=began))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(results_send, order_ids[:30], values(order_ids[:30]))
        await asyncio.to_thread(results_send, order_ids[30:], ["1"] * 70)  # "read it again"
        return await first, await second, listener.waits

    first, second, waits = asyncio.run(scenario())
    assert first == {**{i: {"id": i} for i in order_ids[:30]}, **dict.fromkeys(order_ids[30:60])}
    assert second == dict.fromkeys(order_ids[50:])  # orders 50 to 59 reach both requests
    assert blpops == [] and waits == {}


def test_a_result_published_before_the_request_waits_is_kept_for_it(order_ids, blpops):
    async def scenario() -> dict:
        await listener_up()
        began = asyncio.get_running_loop().time()
        await asyncio.to_thread(results_send, order_ids, values(order_ids))
        await asyncio.sleep(0.1)  # the listener has them before the request waits
        return await order_results_wait(order_ids, timeout_s=0.01, began=began)

    assert asyncio.run(scenario()) == {i: {"id": i} for i in order_ids}
    assert blpops == []


def test_a_request_that_began_before_the_subscription_waits_on_the_lists(order_ids, blpops):
    async def scenario() -> dict:
        began = asyncio.get_running_loop().time()
        await listener_up()  # subscribed after the request began: results before that would be missed
        await asyncio.to_thread(results_send, order_ids, values(order_ids))
        return await order_results_wait(order_ids, timeout_s=2, began=began)

    assert asyncio.run(scenario()) == {i: {"id": i} for i in order_ids}
    assert blpops == [100]


def test_results_older_than_the_recent_window_are_forgotten(order_ids, blpops, monkeypatch):
    monkeypatch.setattr("ccp.orders.results.RECENT_S", 0.3)

    async def scenario() -> tuple[dict, bool, bool]:
        listener = await listener_up()
        began = asyncio.get_running_loop().time()
        await asyncio.to_thread(results_send, order_ids[:50], values(order_ids[:50]))
        await asyncio.sleep(0.4)
        await asyncio.to_thread(results_send, order_ids[50:], values(order_ids[50:]))  # prunes the first ones
        await asyncio.sleep(0.05)
        kept = set(listener.recent) & set(order_ids)
        return kept, listener.covers(began), listener.covers(asyncio.get_running_loop().time())

    kept, old_request_covered, new_request_covered = asyncio.run(scenario())
    assert kept == set(order_ids[50:])
    # a request older than the window could have missed its result: it goes to the lists
    assert not old_request_covered and new_request_covered


def test_the_wait_finishes_on_the_lists_when_the_subscription_breaks(order_ids, blpops):
    async def scenario() -> tuple[dict, bool]:
        listener = await listener_up()
        began = asyncio.get_running_loop().time()
        waiting = asyncio.ensure_future(order_results_wait(order_ids, timeout_s=3, began=began))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(results_send, order_ids[:40], values(order_ids[:40]))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(kill_listener)
        await asyncio.sleep(0.1)
        down = listener.since is None
        # published while this process is not subscribed: only the lists have them
        await asyncio.to_thread(results_send, order_ids[40:], values(order_ids[40:]))
        return await waiting, down

    done, down = asyncio.run(scenario())
    assert down
    assert done == {i: {"id": i} for i in order_ids}
    assert blpops and blpops[0] == 60


def test_an_unreadable_message_on_the_channel_is_skipped(order_ids, blpops):
    async def scenario() -> dict:
        listener = await listener_up()
        began = asyncio.get_running_loop().time()
        await asyncio.to_thread(redis_client().publish, RESULTS_CHANNEL, b"not a result")
        await asyncio.to_thread(results_send, order_ids, values(order_ids))
        done = await order_results_wait(order_ids, timeout_s=2, began=began)
        assert listener.since is not None and not listener.task.done()
        return done

    assert asyncio.run(scenario()) == {i: {"id": i} for i in order_ids}
    assert blpops == []
