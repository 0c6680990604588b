import pytest
from django.db import transaction

from ccp.streams import _BUNDLE, _bundled, stream_publish

pytestmark = pytest.mark.django_db


def test_one_transaction_publishes_its_events_in_one_batch(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            for n in range(50):
                stream_publish("book.1", {"type": "test", "n": n})
    assert len(hooks) == 1


def test_a_block_without_a_savepoint_stays_in_the_outer_batch(django_capture_on_commit_callbacks):
    # trades_book runs as atomic(savepoint=False) inside an auction's apply: its 30,000 public trades
    # go out with the apply's other events in one batch (one send), not in one of their own
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            stream_publish("book.1", {"type": "before"})
            with transaction.atomic(savepoint=False):
                stream_publish("book.1", {"type": "inside"})
            stream_publish("book.1", {"type": "after"})
    assert len(hooks) == 1
    assert [m[1]["event"]["type"] for m in hooks[0].__self__.messages] == ["before", "inside", "after"]


def test_a_rolled_back_savepoint_starts_a_new_batch(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    stream_publish("book.1", {"type": "undone"})
                    raise RuntimeError
            except RuntimeError:
                pass
            stream_publish("book.1", {"type": "kept"})
    assert len(hooks) == 1
    assert [m[1]["event"]["type"] for m in hooks[0].__self__.messages] == ["kept"]


def test_events_of_a_rolled_back_savepoint_are_not_sent_with_the_outer_batch(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as hooks:
        with transaction.atomic():
            stream_publish("book.1", {"type": "before"})
            try:
                with transaction.atomic():
                    stream_publish("book.1", {"type": "undone"})
                    raise RuntimeError
            except RuntimeError:
                pass
            stream_publish("book.1", {"type": "after"})
    assert [m[1]["event"]["type"] for hook in hooks for m in hook.__self__.messages] == ["before", "after"]


def test_runs_of_stream_events_go_out_bundled_in_order_around_other_messages():
    events = [{"type": "stream.event", "event": {"n": n}} for n in range(_BUNDLE + 3)]
    revoked = {"type": "token.revoked", "token_id": 7}
    bundled = _bundled([*events[:2], revoked, *events[2:]])
    assert [m["type"] for m in bundled] == ["stream.events", "token.revoked", "stream.events", "stream.events"]
    assert [e["n"] for m in bundled if m["type"] == "stream.events" for e in m["events"]] == list(range(_BUNDLE + 3))
    assert len(bundled[2]["events"]) == _BUNDLE


@pytest.mark.django_db(transaction=True)  # no test transaction around it: each publish is sent at once
def test_sends_from_synchronous_code_reuse_one_redis_connection():
    # a worker publishes after every transaction: each send used to open an event loop and a Redis
    # connection of its own (4,001 connections for 2,000 orders in bench/order_intake.py)
    import redis
    from django.conf import settings

    stats = redis.Redis.from_url(settings.REDIS_URL)

    def connections_opened() -> int:
        return int(stats.info("stats")["total_connections_received"])

    stream_publish("book.1", {"type": "warm-up"})  # outside a transaction: sent at once
    before = connections_opened()
    for n in range(30):
        stream_publish("book.1", {"type": "test", "n": n})
    assert connections_opened() - before <= 2
