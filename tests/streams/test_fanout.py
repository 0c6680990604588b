"""Fan-out: a stream event reaches its subscribers without a hop to the process's synchronous thread,
which every request's view runs on (``ccp.asgi``): a slow view, or 1,000 subscribers each queued
behind the others on that one thread, must not hold a book change up."""

import asyncio
import os
import threading
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from ccp.streams import SYSTEM_GROUP, book_group
from tests.factories import ContractFactory
from tests.streams.conftest import QUIET, TIMEOUT, ws_connect

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


async def test_a_system_event_reaches_the_subscriber_while_the_sync_thread_is_busy():
    # the streams outside the shared fan-out (system, private) go through Channels' dispatch
    async with ws_connect("/ws/v1/system") as ws:
        release = threading.Event()
        slow_view = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)(TIMEOUT * 4))
        try:
            event = {"type": "heartbeat", "at": "2026-12-05T10:00:00+00:00"}
            await get_channel_layer().group_send(SYSTEM_GROUP, {"type": "stream.event", "event": event})
            assert await ws.receive_json_from(timeout=TIMEOUT) == event
            assert not slow_view.done()
        finally:
            release.set()
            await slow_view


async def test_subscribers_of_one_book_in_one_process_share_one_subscription_and_each_gets_every_change():
    # given three subscribers of one book and one of another, in this process
    contract = await database_sync_to_async(ContractFactory)()
    other = await database_sync_to_async(ContractFactory)(pair=contract.pair, strike_px=Decimal("90000"))
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as a, ws_connect(f"/ws/v1/book/{contract.symbol}") as b, \
            ws_connect(f"/ws/v1/book/{contract.symbol}") as c, ws_connect(f"/ws/v1/book/{other.symbol}") as d:
        n = [(await ws.receive_json_from(timeout=TIMEOUT))["sequence"] for ws in (a, b, c, d)][0]
        layer = get_channel_layer()
        # then the process is in each book's group once (the pub/sub layer's local group members)
        local = layer._get_layer().groups
        assert [len(local[f"asgi__group__{book_group(x.pk)}"]) for x in (contract, other)] == [1, 1]
        # when two changes are published, then each subscriber of the book gets both, in order
        events = [{"type": "book.level", "sequence": n + k, "side": "buy", "price": "100", "quantity": str(k),
                   "orders": 1} for k in (1, 2)]
        await layer.group_send(book_group(contract.pk), {"type": "stream.events", "events": events})
        for ws in (a, b, c):
            assert [await ws.receive_json_from(timeout=TIMEOUT) for _ in events] == events
        assert await d.receive_nothing(timeout=QUIET)


async def test_the_service_side_publishes_straight_to_the_layer_s_redis_channels_in_order():
    """``ccp.streams._send`` (what every commit hook calls) publishes with one pipelined round trip on the
    pub/sub layer's own Redis channels, not through an event loop: a subscriber of the layer gets a group's
    events bundled and in order, and another group's subscriber only its own."""
    from ccp import streams

    assert streams._publisher(os.getpid()) is not None  # the configured layer is the pub/sub one
    layer = get_channel_layer()
    mine, other = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("client.777", mine)
    await layer.group_add("client.778", other)
    await asyncio.sleep(0.1)  # the subscriptions are in place
    events = [{"type": "stream.event", "event": {"n": n}} for n in range(3)]
    await sync_to_async(streams._send)([("client.777", e) for e in events] + [("client.778", events[0])]
                                       + [("client.777", {"type": "token.revoked", "token_id": 5})])
    got = await asyncio.wait_for(layer.receive(mine), 5)
    assert got == {"type": "stream.events", "events": [{"n": 0}, {"n": 1}, {"n": 2}]}
    assert await asyncio.wait_for(layer.receive(mine), 5) == {"type": "token.revoked", "token_id": 5}
    assert await asyncio.wait_for(layer.receive(other), 5) == {"type": "stream.events", "events": [{"n": 0}]}
