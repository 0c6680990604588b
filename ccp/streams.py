"""WebSocket pushes through the channel layer, only after the database commit: a subscriber must
never see what a rollback undid.

Events of one transaction go out together in one channel-layer round trip. The channel layer
delivers at most once; every stream carries what a client needs to notice a gap (book and trade
sequence numbers, the private stream's per-client ``sequence``) and re-sync over REST.

Private stream messages are numbered per client by ``client_stream_publish_many``: 1, 2, 3, ... in the
publishing transaction (``Client.stream_sequence``, one UPDATE for all the clients of a call), so a
rolled-back transaction takes its numbers with it and a committed message that never arrives (the
channel layer dropped it, the process died before sending) leaves a gap its client sees.
"""

import asyncio
import functools
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from ccp.locks import client_stream_sequences_take
from ccp.redisheld import Commands, round_trip

logger = logging.getLogger(__name__)
SYSTEM_GROUP = "system"


def book_group(contract_id: int) -> str:
    return f"book.{contract_id}"


def trades_group(contract_id: int) -> str:
    return f"trades.{contract_id}"


def client_group(client_id: int) -> str:
    return f"client.{client_id}"


_BUNDLE = 500  # stream events per channel-layer message


def _bundled(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of consecutive stream events as ``stream.events`` messages (consumers forward their
    events one by one, in order): an auction's hundreds of book level changes of a contract take a
    few channel-layer round trips instead of one each. Other messages stay as they are, in place."""
    out: list[dict[str, Any]] = []
    for message in messages:
        last = out[-1] if out else None
        if message["type"] != "stream.event":
            out.append(message)
        elif last is not None and last["type"] == "stream.events" and len(last["events"]) < _BUNDLE:
            last["events"].append(message["event"])
        else:
            out.append({"type": "stream.events", "events": [message["event"]]})
    return out


async def _send_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Each group's messages in order; different groups side by side (an auction reaches thousands)."""
    layer = get_channel_layer()
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, message in messages:
        by_group.setdefault(group, []).append(message)
    limit = asyncio.Semaphore(16)

    async def send_group(group: str, group_messages: list[dict[str, Any]]) -> None:
        async with limit:
            for message in _bundled(group_messages):
                await layer.group_send(group, message)

    await asyncio.gather(*(send_group(group, group_messages) for group, group_messages in by_group.items()))


class _Sender:
    """Runs the sends of synchronous code (services, Celery tasks, the on-commit hooks of requests) on
    one event loop per process, in a daemon thread: the channel layer keeps its Redis connections per
    event loop, so ``async_to_sync`` from a thread without a loop (a worker) opened a new loop and a
    new Redis connection for every transaction's events. Made again in a forked child (Celery's
    prefork pool), whose parent's loop thread does not exist there."""

    TIMEOUT_SECONDS = 30  # a Redis that does not answer: the hook fails (logged), the caller goes on

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        with self.lock:
            if self.pid != os.getpid():
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="ccp-streams", daemon=True).start()
                self.pid = os.getpid()
        asyncio.run_coroutine_threadsafe(_send_all(messages), self.loop).result(self.TIMEOUT_SECONDS)


_sender = _Sender()

_PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"


@functools.cache
def _publisher(pid: int) -> tuple[redis.Redis, str] | None:
    """(a Redis client, the layer's channel prefix) to publish with directly, when the channel layer is
    channels_redis' pub/sub layer on one host (as configured): a group's subscribers listen on the Redis
    channel ``<prefix>__group__<group>`` for the layer's serialized messages, which one pipelined round trip
    from this thread can send, without handing them to an event loop. Else None: the layer's own
    ``group_send``. One client per process (``pid``: a forked Celery child makes its own)."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    config = layer.get("CONFIG", {})
    hosts = config.get("hosts", [])
    if layer.get("BACKEND") != _PUBSUB or len(hosts) != 1 or config.get("symmetric_encryption_keys"):
        return None
    host = hosts[0] if isinstance(hosts[0], dict) else {"address": hosts[0]}
    if not isinstance(host.get("address"), str):
        return None
    return (redis.Redis.from_url(host["address"], socket_timeout=_Sender.TIMEOUT_SECONDS, socket_connect_timeout=5),
            config.get("prefix", "asgi"))


def _send(messages: list[tuple[str, dict[str, Any]]], prepared: list[tuple[str, bytes]] | None = None) -> None:
    """Each group's messages in order (bundled), in one round trip when the layer allows it. ``prepared``: the
    messages as ``_serialized`` made them (``stream_messages_prepare``), when they are."""
    if not messages:
        return
    publisher = _publisher(os.getpid())
    if publisher is None:
        _sender.run(messages)
        return
    _published(publisher, messages, prepared).execute()


def _serialized(publisher: tuple[redis.Redis, str], messages: list[tuple[str, dict[str, Any]]]
                ) -> list[tuple[str, bytes]]:
    """(Redis channel, the layer's serialized message) of each group's messages in order, bundled."""
    _, prefix = publisher
    layer = get_channel_layer()
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, message in messages:
        by_group.setdefault(group, []).append(message)
    return [(f"{prefix}__group__{group}", layer.serialize(message))
            for group, group_messages in by_group.items() for message in _bundled(group_messages)]


def _published(publisher: tuple[redis.Redis, str], messages: list[tuple[str, dict[str, Any]]],
               prepared: list[tuple[str, bytes]] | None = None):
    """A pipeline of the publisher's client with each group's messages published in order (bundled), not sent."""
    pipe = publisher[0].pipeline(transaction=False)
    for channel, data in _serialized(publisher, messages) if prepared is None else prepared:
        pipe.publish(channel, data)
    return pipe


def stream_send_with(messages: list[tuple[str, dict[str, Any]]], commands: list[Callable[[Any], Any]]) -> list | None:
    """Outside a transaction (what they tell is committed): send stream messages (``client_stream_messages``) at
    once and, after them in the same round trip, Redis commands on REDIS_URL's database (each of ``commands``
    adds one to the client-like object it is given, as to a pipeline): their results, in order, as a client
    gives them. None, having sent nothing, when the channel layer is not channels_redis' pub/sub layer on
    REDIS_URL: the caller publishes (``stream_messages_publish``) and sends its commands itself. Never raises: a
    failed publish is logged (as ``_publish_on_commit`` does), a failed command's result is its exception (all
    of them when the round trip failed). The round trip goes on a connection of this thread's own
    (``ccp.redisheld``)."""
    assert not transaction.get_connection().in_atomic_block, "stream messages wait for the commit"
    publisher = _publisher(os.getpid())
    if publisher is None or _layer_address() != settings.REDIS_URL:
        return None
    recorded = Commands()
    for channel, data in _serialized(publisher, messages):
        recorded.execute_command("PUBLISH", channel, data)
    published = len(recorded.stack)
    for command in commands:
        command(recorded)
    try:
        results = round_trip(publisher[0], recorded.stack)
    except Exception as exc:  # a stream is best effort: never fail the caller's committed work
        logger.exception("stream publish failed")
        return [exc] * len(commands)
    failed = next((r for r in results[:published] if isinstance(r, Exception)), None)
    if failed is not None:
        logger.error("stream publish failed: %s", failed)
    return results[published:]


def _layer_address() -> str | None:
    hosts = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {}).get("hosts", [])
    return hosts[0].get("address") if len(hosts) == 1 and isinstance(hosts[0], dict) else None


class _Batch:
    def __init__(self, hooks: list, savepoints: tuple) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        # Django replaces the connection's list of commit hooks when the transaction commits or
        # rolls back (a savepoint rollback too): the batch is pending only while that list is current.
        self.hooks = hooks
        # Its hook belongs to the innermost savepoint open when it was made (Django drops the hook if
        # that savepoint rolls back): events published at another savepoint depth go in a new batch,
        # so a rolled-back savepoint takes its events with it, and the batches keep their order.
        self.savepoints = savepoints
        # (how many messages, their serialization under way on a thread): ``prepare``
        self.prepared: tuple[int, Future] | None = None

    def prepare(self) -> None:
        publisher = _publisher(os.getpid())
        if publisher is not None and self.messages:
            messages = list(self.messages)
            self.prepared = (len(messages), _on_thread(lambda: _serialized(publisher, messages)))

    def flush(self) -> None:
        messages, self.messages = self.messages, []
        if self.prepared is not None and self.prepared[0] == len(messages):  # nothing published since
            try:
                prepared = self.prepared[1].result()
            except Exception:  # serialized again by the send, which reports the failure
                pass
            else:
                _send(messages, prepared)
                return
        _send(messages)


def _on_thread(work: Callable[[], Any]) -> Future:
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever reads the result
            future.set_exception(exc)

    threading.Thread(target=run, name="ccp-streams-prepare", daemon=True).start()
    return future


def stream_messages_prepare() -> None:
    """Serialize the current transaction's pending stream messages on a thread now, as the caller is about
    to commit: the commit's wait for PostgreSQL (an auction's apply writes a large transaction) and the
    serialization of its thousands of messages overlap. The send after the commit uses these bytes, unless
    something was published after this call (then it serializes them all itself, as without it). Sends
    nothing before the commit; without pending messages (or outside a transaction) it does nothing."""
    connection = transaction.get_connection()
    batch = getattr(connection, "_ccp_stream_batch", None)
    if connection.in_atomic_block and batch is not None and batch.hooks is connection.run_on_commit:
        batch.prepare()


def _publish_on_commit(messages: list[tuple[str, dict[str, Any]]]) -> None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        try:
            _send(messages)
        except Exception:  # a stream is best effort: never fail the caller's committed work
            logger.exception("stream publish failed")
        return
    batch = getattr(connection, "_ccp_stream_batch", None)
    # A new batch when none is pending in this transaction (the last one ran or was rolled back), or
    # the savepoints open now are not the ones the pending batch was made under.
    # An atomic block without a savepoint of its own (``atomic(savepoint=False)``) stands in the list as
    # None: it is no rollback boundary (a failure in it fails the whole transaction), so not a new batch.
    savepoints = tuple(sid for sid in connection.savepoint_ids if sid is not None)
    if batch is None or batch.hooks is not connection.run_on_commit or batch.savepoints != savepoints:
        batch = connection._ccp_stream_batch = _Batch(connection.run_on_commit, savepoints)
        transaction.on_commit(batch.flush, robust=True)
    batch.messages.extend(messages)


def stream_publish(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to the group's subscribers once the current transaction commits."""
    _publish_on_commit([(group, {"type": "stream.event", "event": event})])


def stream_publish_many(group: str, events: Iterable[dict[str, Any]]) -> None:
    """``stream_publish`` of each of ``events``, in order, at the cost of one, already bundled (an
    auction's 30,000 trades)."""
    events = list(events)
    _publish_on_commit([(group, {"type": "stream.events", "events": events[i:i + _BUNDLE]})
                        for i in range(0, len(events), _BUNDLE)])


def client_stream_publish(client_id: int, event: dict[str, Any]) -> None:
    """``client_stream_publish_many`` of one event."""
    client_stream_publish_many([(client_id, event)])


def client_stream_publish_many(events: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """Send each (client id, event) to its client's private stream once the current transaction commits,
    as a message with the client's next ``sequence`` (a key the event must not have), numbered now, in
    this transaction, in the given order: one UPDATE of the clients' counters for the whole call, which
    locks their rows until the commit (``ccp.locks`` 8: publish after the other locks). Every private
    stream message goes through here."""
    events = list(events)
    if events:
        client_stream_publish_taken(events, client_stream_sequences_take(Counter(c for c, _ in events)))


def client_stream_publish_taken(events: Iterable[tuple[int, dict[str, Any]]], last: Mapping[int, int]) -> None:
    """``client_stream_publish_many`` of events whose numbers the caller took in this transaction, each client's
    counter moved by exactly its events' count (``ccp.locks.client_stream_sequence_take_sql``): ``last`` is
    each client's new last number."""
    _publish_on_commit(client_stream_messages(events, last))


def client_stream_messages(events: Iterable[tuple[int, dict[str, Any]]],
                           last: Mapping[int, int]) -> list[tuple[str, dict[str, Any]]]:
    """The private stream messages of ``client_stream_publish_taken``, numbered, not sent: to send at once with
    other commands (``stream_send_with``) or publish (``stream_messages_publish``)."""
    events = list(events)
    taken = Counter()
    numbered = []
    for client_id, event in reversed(events):  # the last of a client's events takes its last number
        numbered.append((client_group(client_id), {"type": "stream.event",
                                                   "event": {**event, "sequence": last[client_id] - taken[client_id]}}))
        taken[client_id] += 1
    return numbered[::-1]


def stream_messages_publish(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish messages (``client_stream_messages``) as the current transaction's, after its commit (at once
    outside one)."""
    _publish_on_commit(messages)


def token_revoked_publish(client_id: int, token_id: int) -> None:
    """After commit, tell the client's open private streams that one of its tokens stopped working."""
    _publish_on_commit([(client_group(client_id), {"type": "token.revoked", "token_id": token_id})])
