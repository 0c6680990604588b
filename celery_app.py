"""The Celery application: ``celery -A celery_app worker`` and ``celery -A celery_app beat``.

Configuration comes from Django settings (``CELERY_*``); tasks are found in each app's tasks.py.

Queues (``QUEUES``): ``book-<n>`` (the continuous contracts' matchers), ``orders`` (order validation),
``auctions`` (an auction's close, solve and apply: a solve may take ``CCP_AUCTION_TIME_LIMIT_SECONDS``),
``celery`` (everything else: beat's
periodic tasks, prices, settlement, heartbeats). Ops run one worker per queue, so a long solve never
delays an order's validation (``bin/stack.py`` ``ops_children`` starts them):

    celery -A celery_app worker -Q orders -n orders@%h --concurrency 2
    celery -A celery_app worker -Q auctions -n auctions@%h --concurrency 1
    celery -A celery_app worker -Q celery -n default@%h --concurrency 1
    celery -A celery_app worker -Q book-0 -n book-0@%h --concurrency 1   # one per CCP_BOOK_QUEUES queue

A worker started without ``-Q`` consumes every queue (one process for a small deployment or a test).
"""

import os

from celery import Celery, Task, signals
from django.db import InterfaceError, OperationalError
from kombu import Queue
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")


def _connparams_of_open_connection(connparams):
    """kombu 5.7: when Redis goes away, the worker's consumer collects its connection (the transport
    forgets its client) and then closes it; closing the channel restores its unacknowledged messages,
    which needs a Redis client built from that forgotten client, and the AttributeError ('NoneType'
    object has no attribute 'hostname') escaped every handler: the worker exited. A closed connection
    is a connection error, which the close and the consumer's reconnect already handle; the messages
    stay in Redis's unacked set (restored after the visibility timeout; lost with Redis itself)."""

    def checked(channel, *args, **kwargs):
        if channel.connection.client is None:
            raise kombu_redis.redis.exceptions.ConnectionError("the broker connection was already closed")
        return connparams(channel, *args, **kwargs)

    return checked


kombu_redis.Channel._connparams = _connparams_of_open_connection(kombu_redis.Channel._connparams)


class ClearingTask(Task):
    """Every task of the clearing house: one that lost its database connection (PostgreSQL restarted,
    a pooled connection timed out, a deadlock victim) is retried after 1, 2, 4, 8, 16 s (jittered)
    instead of waiting for the stale-order sweep or the auction resume. Every task is idempotent."""

    autoretry_for = (OperationalError, InterfaceError)
    max_retries = 5
    retry_backoff = 1
    retry_backoff_max = 16


# queue -> the tasks routed to it (names or glob patterns); other tasks go to the default queue.
QUEUES: dict[str, tuple[str, ...]] = {
    "orders": ("orders.*",),
    "auctions": ("matching.close", "matching.solve", "matching.apply"),
    "celery": (),
}
DEFAULT_QUEUE = "celery"

app = Celery("ccp", task_cls=ClearingTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
# The continuous contracts' matchers: contracts spread over CCP_BOOK_QUEUES queues, routed per contract
# by the caller (ccp.book.tasks.book_queue). One single-process worker per queue.
BOOK_QUEUES = tuple(f"book-{i}" for i in range(int(os.environ.get("CCP_BOOK_QUEUES", "1"))))
QUEUES.update({name: () for name in BOOK_QUEUES})
app.conf.task_default_queue = DEFAULT_QUEUE
# Each queue bound under its own name (not Celery's default key for all); a worker without -Q consumes them all.
app.conf.task_queues = [Queue(name, routing_key=name) for name in QUEUES]
app.conf.task_routes = {pattern: {"queue": queue} for queue, patterns in QUEUES.items() for pattern in patterns}
app.autodiscover_tasks()


@signals.task_postrun.connect
def connections_release(task=None, **kwargs) -> None:
    """After every task, failed or not, give its database connections back as a request does: to the
    pool, which drops a broken one (PostgreSQL restarted) and checks the next before handing it out.
    Celery's own fixup keeps them for CELERY_DB_REUSE_MAX tasks, so one dead connection failed every
    task of its process for minutes. Eager tasks run inside their caller's transaction: left alone."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_init.connect
@signals.worker_process_init.connect
def gc_settled(**kwargs) -> None:
    """The worker's main process (its modules loaded, before it forks its pool: the pool's processes share the
    frozen objects' pages) and each pool process once started settle their collector (``ccp.memory.gc_settle``):
    a full collection over a loaded worker's objects stopped a matcher for up to 0.25 s."""
    from ccp.memory import gc_settle

    gc_settle()
