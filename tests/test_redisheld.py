"""``ccp.redisheld``: commands packed as redis-py packs them, sent on the thread's own connection, each result
as the client gives it; a throttle's counting there is one transaction, and lets requests through without
Redis, as before."""

import logging

import pytest
import redis
from django.conf import settings

from ccp import throttling
from ccp.redisheld import Commands, _packed, held_connection, round_trip
from ccp.throttling import Rate, hits


def test_commands_are_packed_as_redis_py_packs_them():
    commands = Commands()
    commands.set("k-é", b"\x00\xff", nx=True, ex=30).publish("channel", "x" * 10_000).incrby("n", -3)
    commands.execute_command("SCRIPT LOAD", 1.5).execute_command("CLIENT\tID")
    connection = redis.Redis.from_url(settings.REDIS_URL).connection_pool.make_connection()
    assert _packed(connection.encoder, commands.stack) == b"".join(
        connection.pack_commands([args for args, _ in commands.stack]))
    with pytest.raises(redis.DataError):  # what redis-py refuses, refused alike
        _packed(connection.encoder, Commands().set("k", True).stack)


def test_results_as_the_client_gives_them():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("test:held:k")
    commands = Commands()
    commands.set("test:held:k", 1, nx=True, ex=60).set("test:held:k", 1, nx=True, ex=60).get("test:held:k")
    commands.execute_command("LPUSH", "test:held:k", "x").exists("test:held:k")
    results = round_trip(client, commands.stack)
    assert results[:3] == [True, None, b"1"] and results[4] == 1
    assert isinstance(results[3], redis.ResponseError)  # WRONGTYPE: the error reply, not raised
    assert held_connection(client) is held_connection(client)
    client.delete("test:held:k")


def test_a_throttles_count_is_one_transaction_and_survives_a_dropped_connection():
    rate = Rate.parse("3/min")
    assert hits("test-held", "who", rate, 2, now=60.5) == (2, pytest.approx(59.5))
    connection = held_connection(throttling._redis())
    connection.send_command("CLIENT", "ID")
    throttling._redis().client_kill_filter(_id=connection.read_response())
    assert hits("test-held", "who", rate, 2, now=61) == (1, pytest.approx(59))  # the third of the window only
    assert throttling._redis().ttl("ccp:throttle:test-held:who:60:1") == 61


def test_without_redis_a_throttle_lets_requests_through(monkeypatch, caplog):
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    monkeypatch.setattr(throttling, "_redis", lambda: dead)
    with caplog.at_level(logging.WARNING, logger="ccp.throttling"):
        assert hits("test-held", "who", Rate.parse("1/min"), 5, now=60) == (5, 60)
    assert "Redis unreachable" in caplog.text
