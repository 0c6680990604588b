"""publish_prepare: a transaction's stream messages serialized before its commit (an auction's apply) are
sent after the commit, each once and in order, also when more are published after the call."""

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from ccp.db import FEW_ROWS
from ccp.streams import SYSTEM_GROUP, publish_prepare, stream_publish, stream_publish_many
from tests.streams.conftest import QUIET, TIMEOUT, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _beat(n: int) -> dict:
    return {"type": "heartbeat", "at": f"2026-12-05T10:00:{n % 60:02d}+00:00", "n": n}


async def _received(ws, count: int) -> list[dict]:
    return [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(count)]


async def test_events_published_after_the_prepare_go_out_with_the_others_each_once_in_order():
    # given a subscriber of the system stream
    async with ws_connect("/ws/v1/system") as ws:
        # when a transaction publishes a bundle and an event, prepares, publishes one more and commits
        @database_sync_to_async
        def publish():
            with transaction.atomic():
                stream_publish_many(SYSTEM_GROUP, [_beat(1), _beat(2)])
                stream_publish(SYSTEM_GROUP, _beat(3))  # joins the bundle on the wire
                publish_prepare()
                stream_publish(SYSTEM_GROUP, _beat(4))

        await publish()

        # then the subscriber gets the four events once each, in order
        assert await _received(ws, 4) == [_beat(n) for n in range(1, 5)]
        assert await ws.receive_nothing(timeout=QUIET)


async def test_a_large_prepared_batch_is_sent_after_the_commit_and_a_rolled_back_one_never():
    # given a subscriber of the system stream
    async with ws_connect("/ws/v1/system") as ws:
        events = [_beat(n) for n in range(FEW_ROWS + 1)]  # serialized on a thread

        @database_sync_to_async
        def publish(rollback: bool):
            with transaction.atomic():
                for event in events:
                    stream_publish(SYSTEM_GROUP, event)
                publish_prepare()
                transaction.set_rollback(rollback)

        # when one transaction prepares its events and rolls back, and another prepares and commits
        await publish(rollback=True)
        await publish(rollback=False)

        # then only the committed one's events arrive, once each, in order
        assert await _received(ws, len(events)) == events
        assert await ws.receive_nothing(timeout=QUIET)
