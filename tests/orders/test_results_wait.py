"""A request's wait for its orders' results (``order_results_wait``) against the real Redis: every signal
is taken once, those already there together, not one BLPOP per order."""

import asyncio
import json
import secrets

import pytest
import redis.asyncio
from django.db import transaction

from ccp.orders.results import RESULT_TTL_S, order_results_signal, order_results_wait, redis_client, result_key
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
