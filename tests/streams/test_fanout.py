"""Fan-out: a stream event reaches its subscribers without a hop to the process's synchronous thread,
which every request's view runs on (``ccp.asgi``): a slow view, or 1,000 subscribers each queued
behind the others on that one thread, must not hold a book change up."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from ccp.streams import book_group
from tests.factories import ContractFactory
from tests.streams.conftest import TIMEOUT, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_book_change_reaches_the_subscriber_while_the_sync_thread_is_busy():
    # given a subscriber with its snapshot, and the process's sync thread held by a slow view
    contract = await database_sync_to_async(ContractFactory)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        release = threading.Event()
        slow_view = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)(TIMEOUT * 4))
        try:
            # when a book change is published
            event = {"type": "book.level", "sequence": snapshot["sequence"] + 1, "side": "buy", "price": "100",
                     "quantity": "1", "orders": 1}
            await get_channel_layer().group_send(book_group(contract.pk), {"type": "stream.event", "event": event})

            # then the subscriber has it before the view ends
            assert await ws.receive_json_from(timeout=TIMEOUT) == event
            assert not slow_view.done()
        finally:
            release.set()
            await slow_view
