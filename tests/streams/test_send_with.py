"""``stream_send_with``: stream messages and Redis commands in one round trip on a connection of the calling
thread's own, with each command's result as a client gives it; a connection Redis dropped is made again; an
unreachable Redis fails no caller (each command's result is the error)."""

import logging
import os

import pytest
import redis
from django.conf import settings
from django.db import connection

from ccp import streams
from ccp.redisheld import held_connection
from ccp.streams import client_group, stream_send_with

pytestmark = pytest.mark.django_db(transaction=True)  # outside a transaction, as a committed order's


@pytest.fixture
def store():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("test:send-with:flag", "test:send-with:list")
    yield client
    client.delete("test:send-with:flag", "test:send-with:list")


def flag(client):
    return client.set("test:send-with:flag", 1, nx=True, ex=60)


def test_messages_then_commands_with_a_clients_results(store):
    assert not connection.in_atomic_block
    layer_prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "asgi")
    listener = store.pubsub()
    listener.subscribe(f"{layer_prefix}__group__{client_group(991)}")
    listener.get_message(timeout=1)  # the subscription's confirmation
    store.rpush("test:send-with:list", "x")
    try:
        message = (client_group(991), {"type": "stream.event", "event": {"n": 1}})
        results = stream_send_with([message], [flag, flag, lambda c: c.incr("test:send-with:list"),
                                               lambda c: c.get("test:send-with:flag")])
        got = listener.get_message(timeout=1)
    finally:
        listener.close()
    assert results[:2] == [True, None]  # set; then set already (what redis.Redis.set answers)
    assert isinstance(results[2], redis.ResponseError)  # an error reply is that command's result, not raised
    assert results[3] == b"1"
    assert streams._publisher(os.getpid())[0].set("test:send-with:other", 1, nx=True) is True  # as a client gives
    store.delete("test:send-with:other")
    from channels.layers import get_channel_layer

    assert get_channel_layer().deserialize(got["data"]) == {"type": "stream.events", "events": [{"n": 1}]}


def test_a_dropped_connection_is_made_again(store):
    assert stream_send_with([], [flag]) == [True]
    held = held_connection(streams._publisher(os.getpid())[0])
    held.send_command("CLIENT", "ID")
    store.client_kill_filter(_id=held.read_response())  # Redis drops it (a restart, an idle timeout)
    store.delete("test:send-with:flag")
    assert stream_send_with([], [flag, flag]) == [True, None]
    assert held_connection(streams._publisher(os.getpid())[0]) is held  # the same connection, connected again


def test_an_unreachable_redis_fails_no_caller(monkeypatch, caplog):
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    monkeypatch.setattr(streams, "_publisher", lambda pid: (dead, "asgi"))
    with caplog.at_level(logging.ERROR, logger="ccp.streams"):
        results = stream_send_with([(client_group(991), {"type": "stream.event", "event": {}})], [flag, flag])
    assert len(results) == 2 and all(isinstance(r, redis.ConnectionError) for r in results)
    assert "stream publish failed" in caplog.text
    monkeypatch.undo()
    assert stream_send_with([], [flag]) == [True]  # this thread's connection to the real one again
