"""``stream_messages_prepare``: a transaction's stream messages serialized on a thread before its commit go out
after the commit as they would have without it, through the real Redis channel layer; nothing goes out
before the commit or after a rollback, and a message published after the call goes out with the others."""

import os
import time

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from ccp import streams
from ccp.streams import stream_messages_prepare, stream_publish

pytestmark = pytest.mark.django_db(transaction=True)
GROUP = "test.prepare"


class Rollback(Exception):
    pass


@pytest.fixture
def received():
    """The events published to GROUP, read from Redis (what a subscriber's channel layer reads)."""
    client, prefix = streams._publisher(os.getpid())
    pubsub = client.pubsub()
    pubsub.subscribe(f"{prefix}__group__{GROUP}")
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    layer = get_channel_layer()

    def read() -> list:
        events, deadline = [], time.monotonic() + 0.5
        while (message := pubsub.get_message(timeout=max(deadline - time.monotonic(), 0))) is not None:
            decoded = layer.deserialize(message["data"])
            events += decoded["events"] if decoded["type"] == "stream.events" else [decoded["event"]]
        return events

    yield read
    pubsub.close()


@pytest.fixture
def prepared(monkeypatch) -> list[bool]:
    """Whether each send after a commit used bytes serialized before it."""
    used: list[bool] = []
    send = streams._send

    def recorded(messages, prepared=None):
        used.append(prepared is not None)
        send(messages, prepared)

    monkeypatch.setattr(streams, "_send", recorded)
    return used


def test_messages_serialized_before_the_commit_go_out_after_it_in_order(received, prepared):
    with transaction.atomic():
        for n in range(3):
            stream_publish(GROUP, {"type": "tick", "n": n})
        stream_messages_prepare()
        time.sleep(0.1)
        assert received() == []  # not before the commit
    assert received() == [{"type": "tick", "n": n} for n in range(3)]
    assert prepared == [True]


def test_a_message_published_after_the_call_goes_out_with_the_others(received, prepared):
    with transaction.atomic():
        stream_publish(GROUP, {"type": "tick", "n": 0})
        stream_messages_prepare()
        stream_publish(GROUP, {"type": "tick", "n": 1})
    assert received() == [{"type": "tick", "n": 0}, {"type": "tick", "n": 1}]
    assert prepared == [False]  # serialized again, all of them


def test_a_rollback_sends_nothing(received, prepared):
    with pytest.raises(Rollback), transaction.atomic():
        stream_publish(GROUP, {"type": "tick", "n": 0})
        stream_messages_prepare()
        raise Rollback
    assert received() == [] and prepared == []


def test_outside_a_transaction_it_does_nothing(prepared):
    stream_messages_prepare()
    assert prepared == []
