"""Long-lived processes settle their collector once loaded (``ccp.memory.gc_settle``): a server process at its
ASGI lifespan start, before its first request; each Celery worker process when it starts."""

import asyncio
import gc

import pytest
from celery import signals

import celery_app
from ccp.memory import GC_YOUNG, gc_settle


@pytest.fixture
def collector():
    """The test process's collector as Python starts it, and as it was afterwards."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, *threshold[1:])
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def frozen(thing) -> bool:
    return not any(o is thing for o in gc.get_objects())  # the collector lists every object but the frozen


def test_settling_freezes_what_is_loaded_and_lets_the_young_generation_grow(collector):
    kept = [[]]
    assert not frozen(kept)
    gc_settle()
    assert frozen(kept)
    assert gc.get_threshold()[0] == GC_YOUNG > 700
    later = [[]]
    assert not frozen(later)  # what comes after is collected as usual


def test_a_server_process_settles_at_its_lifespan_start(collector):
    from ccp.asgi import application

    kept = [[]]
    messages, sent = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}], []

    async def receive():
        return messages.pop(0)

    async def send(message):
        if message["type"] == "lifespan.startup.complete":
            assert frozen(kept) and gc.get_threshold()[0] == GC_YOUNG  # before the server takes requests
        sent.append(message)

    asyncio.run(application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("signal", [signals.worker_process_init, signals.worker_init])
def test_each_celery_worker_process_settles_when_it_starts(collector, signal):
    assert any(ref() is celery_app.gc_settled for _, ref in signal.receivers)
    kept = [[]]
    celery_app.gc_settled(sender=None)
    assert frozen(kept)
