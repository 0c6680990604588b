"""The Celery app with a deliberately long auction solve, for a worker started with
``celery -A tests.system.held_solve_app worker --pool solo``: ``matching.solve`` (its real task, name
and route) sets ``<key>:started`` in Redis, then holds its worker until the test sets
``<key>:release`` (at most 120 s), then sets ``<key>:finished`` and returns without solving."""

import time
from types import SimpleNamespace

import redis
from celery import signals

from celery_app import app

__all__ = ["app"]
HELD_SOLVE_KEY = "ccp:test:held-solve"


def _held_solve(*, auction_id: int, now) -> SimpleNamespace:
    from django.conf import settings

    store = redis.Redis.from_url(settings.REDIS_URL)
    store.set(f"{HELD_SOLVE_KEY}:started", auction_id)
    deadline = time.monotonic() + 120
    while not store.exists(f"{HELD_SOLVE_KEY}:release") and time.monotonic() < deadline:
        time.sleep(0.05)
    store.set(f"{HELD_SOLVE_KEY}:finished", auction_id)
    return SimpleNamespace(state="held")


@signals.worker_ready.connect
def _hold_solves(**kwargs) -> None:
    # solo pool: tasks run in this process, whose task modules are loaded once the worker is ready
    import ccp.matching.tasks

    ccp.matching.tasks.auction_solve = _held_solve
