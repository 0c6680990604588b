"""Redis commands of a request's hot path on a connection of the calling thread's own: no pool checkout and
release, no pipeline object, the commands packed by hand. Each thread keeps one connection per client, made by
the client's pool with its settings (timeouts, database), never handed back to the pool.

``Commands`` records a client's commands (its methods, as on a pipeline: ``commands.set(...)``), ``round_trip``
sends them in one write and reads every reply: each result as the client itself gives it (its
``parse_response``, as its pipeline does), an error reply as its ResponseError, not raised."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.commands.core import CoreCommands


class Commands(CoreCommands):
    """A client's commands recorded, not sent: (arguments, options) as its ``execute_command`` gets them."""

    def __init__(self) -> None:
        self.stack: list[tuple[tuple, dict]] = []

    def execute_command(self, *args: Any, **options: Any) -> Commands:
        self.stack.append((args, options))
        return self


_held = threading.local()  # this thread's connections: client's pool -> its connection


def held_connection(client: redis.Redis):
    """This thread's own connection to ``client``'s Redis (made again in a forked child)."""
    held = getattr(_held, "connections", None)
    if held is None:
        held = _held.connections = {}
    connection = held.get(client.connection_pool)
    if connection is None or connection.pid != os.getpid():
        connection = held[client.connection_pool] = client.connection_pool.make_connection()
    return connection


def round_trip(client: redis.Redis, commands: list[tuple[tuple, dict]]) -> list:
    """``commands`` (``Commands.stack``) sent in one write on this thread's own connection to ``client``'s Redis:
    each one's result as ``client`` gives it, or its error reply (a ResponseError, not raised). A dropped
    connection (Redis restarted, an idle timeout) is made again and the commands sent once more, as a pipeline
    does; a second failure, or any other, is raised, and the next call connects again."""
    connection = held_connection(client)
    packed = _packed(connection.encoder, commands)
    for last in (False, True):
        try:
            connection.send_packed_command([packed])
            results = []
            for args, options in commands:
                try:
                    results.append(client.parse_response(connection, args[0], **options))
                except redis.ResponseError as exc:
                    results.append(exc)
            return results
        except redis.ConnectionError:
            connection.disconnect()
            if last:
                raise
        except BaseException:
            connection.disconnect()  # the next call connects again
            raise
    raise AssertionError("unreachable")


def _packed(encoder, commands: list[tuple[tuple, dict]]) -> bytes:
    """The commands in Redis' protocol, as redis-py packs them (a command name of several words as several
    arguments; every argument through the connection's encoder but bytes, text and integers, written here as it
    writes them), at a fifth of its cost."""
    out = []
    for args, _ in commands:
        if type(args[0]) is str:
            args = (*args[0].split(), *args[1:])
        out.append(b"*%d\r\n" % len(args))
        for arg in args:
            kind = type(arg)
            data = arg if kind is bytes else arg.encode() if kind is str and encoder.encoding == "utf-8" and \
                encoder.encoding_errors == "strict" else b"%d" % arg if kind is int else encoder.encode(arg)
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
