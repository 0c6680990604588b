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


def bin_stack():
    """bin/stack.py by path (bin/ is not a package): its services and its supervisor, as bin/run uses them."""
    import importlib.util

    if (module := sys.modules.get("ccp_bin_stack")) is not None:
        return module
    spec = importlib.util.spec_from_file_location("ccp_bin_stack", REPO / "bin" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_SUPERVISE = """
import json, os, sys
sys.path.insert(0, "bin")
import stack
commands, max_restarts = json.loads(sys.argv[1]), int(sys.argv[2])
sys.exit(stack.run_children(commands, dict(os.environ), max_restarts=max_restarts))
"""


class Supervisor:
    """bin/run's supervisor (``run_children``) in a child process of the test, over ``commands``;
    its output (and its children's) goes to ``log``. Children's pids are read from its log lines."""

    def __init__(self, commands: dict[str, list[str]], log: Path, env: dict[str, str] | None = None,
                 max_restarts: int = 5) -> None:
        import json

        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", _SUPERVISE, json.dumps(commands), str(max_restarts)],
                                         cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})

    def pids(self, name: str) -> list[int]:
        """Every pid the child ``name`` had, in start order."""
        import re

        return [int(pid) for pid in re.findall(rf"\[ccp\] {name} started \(pid (\d+)\)", self.log.read_text())]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
