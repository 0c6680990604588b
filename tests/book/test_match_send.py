"""``book_match_send`` queues the matcher's task as ``apply_async`` would (the same message but for its ids), on
the contract's queue in the real broker, and runs it in-process where tasks are eager."""

import json

import pytest
import redis
from django.conf import settings

from ccp.book.tasks import book_match_send, book_match_task, book_queue
from tests.factories import ContractFactory

IDS = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"), ("properties", "correlation_id"),
       ("properties", "delivery_tag"), ("properties", "reply_to")}


def queued(broker: redis.Redis, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)][::-1]  # LPUSH: the oldest last


def without_ids(message: dict) -> dict:
    return {part: ({k: v for k, v in value.items() if (part, k) not in IDS} if isinstance(value, dict) else value)
            for part, value in message.items()}


def test_the_message_is_apply_asyncs_but_for_its_ids():
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    contract_id = 1_000_003
    queue = book_queue(contract_id)
    broker.delete(queue)
    try:
        book_match_task.apply_async((contract_id,), queue=queue)
        book_match_send(contract_id)
        by_apply_async, sent = queued(broker, queue)
    finally:
        broker.delete(queue)
    assert without_ids(sent) == without_ids(by_apply_async)
    assert sent["headers"]["task"] == "book.match" and sent["headers"]["argsrepr"] == f"({contract_id},)"
    assert sent["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
    assert sent["headers"]["id"] != by_apply_async["headers"]["id"]
    assert sent["properties"]["reply_to"] == by_apply_async["properties"]["reply_to"]  # the same thread's


@pytest.mark.django_db
def test_eager_tasks_run_in_process(eager_tasks):
    contract = ContractFactory(trading_mode="continuous")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = book_queue(contract.pk)
    broker.delete(queue)
    with eager_tasks():
        book_match_send(contract.pk)
    assert broker.llen(queue) == 0
