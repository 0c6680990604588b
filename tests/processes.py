"""Helpers for tests that run the real ops processes (daphne, Celery worker and beat) as children."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def process_env() -> dict[str, str]:
    """Point child processes at the test database: they see what a transactional test commits."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}


class Children:
    """Child processes of one test; logs are printed at teardown (pytest shows them on failure)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=process_env(), stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def worker(self, *extra: str) -> subprocess.Popen:
        return self.start("worker", "-m", "celery", "-A", "celery_app", "worker", "--loglevel", "INFO",
                          "--without-mingle", "--without-gossip", *extra)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in sorted(self.log_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
