"""The ops commands, proven across processes: beat -> Redis -> worker -> PostgreSQL -> channel layer -> daphne."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import websockets
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ccp.system.models import Edge
from ccp.system.services import HEARTBEAT_EDGE

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def process_env() -> dict[str, str]:
    """The test database for child processes: they see what this test commits."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def start(process_env, tmp_path):
    procs: list[subprocess.Popen] = []

    def _start(name: str, *argv: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=process_env, stdout=log,
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    for log in sorted(tmp_path.glob("*.log")):  # shown by pytest only when the test failed
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def first_heartbeat(url: str, timeout_s: float) -> dict:
    async with websockets.connect(url, open_timeout=timeout_s) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


def test_beat_worker_and_daphne_deliver_heartbeats(start):
    # given the heartbeat schedule at one second, as an operator could set it in the admin
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="heartbeat", defaults={"task": "system.heartbeat",
                                                                      "interval": every_second, "enabled": True})
    port = free_port()
    # when the three ops processes run, as bin/run starts them
    start("daphne", "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ccp.asgi:application")
    start("worker", "-m", "celery", "-A", "celery_app", "worker", "--pool", "solo", "--loglevel", "INFO",
          "--without-mingle", "--without-gossip")
    start("beat", "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO",
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
