"""The ops commands, proven across processes: beat -> Redis -> worker -> PostgreSQL -> channel layer -> daphne."""

import asyncio
import json
import urllib.request

import pytest
import websockets
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ccp.system.models import Edge
from ccp.system.services import HEARTBEAT_EDGE
from tests.processes import free_port, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


async def first_heartbeat(url: str, timeout_s: float) -> dict:
    async with websockets.connect(url, open_timeout=timeout_s) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


def test_beat_worker_and_daphne_deliver_heartbeats(children):
    # given the heartbeat schedule at one second, as an operator could set it in the admin
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="heartbeat", defaults={"task": "system.heartbeat",
                                                                      "interval": every_second, "enabled": True})
    port = free_port()
    # when the three ops processes run, as bin/run starts them
    children.start("daphne", "-m", "ccp.server", "-b", "127.0.0.1", "-p", str(port), "ccp.asgi:application")
    children.worker("--pool", "solo")
    children.start("beat", "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO",
                   "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", "1")
    # then the edge advances, again and again
    first_at = wait_for(lambda: Edge.objects.filter(name=HEARTBEAT_EDGE).values_list("at", flat=True).first(),
                        60, "a first heartbeat")
    wait_for(lambda: Edge.objects.get(name=HEARTBEAT_EDGE).at > first_at, 30, "a second heartbeat")
    # and daphne serves the API and pushes the next heartbeat to a WebSocket subscriber
    health = wait_for(lambda: _get_json(f"http://127.0.0.1:{port}/api/v1/health"), 30, "daphne")
    assert health["status"] == "ok" and health["heartbeat_at"]
    event = asyncio.run(first_heartbeat(f"ws://127.0.0.1:{port}/ws/v1/system", 20))
    assert event["type"] == "heartbeat" and event["at"] > first_at.isoformat()


def _get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except OSError:
        return None
