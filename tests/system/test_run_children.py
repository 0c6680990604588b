"""bin/run's supervisor (``run_children`` in bin/stack.py): a child that exits is restarted with a log
line, a crash-looping one stops everything with a clear message, SIGTERM stops every child."""

import os
import re
import signal
import subprocess
import sys
import time

from tests.processes import REPO, wait_for

SUPERVISE = """
import json, sys
sys.path.insert(0, "bin")
import stack
sys.exit(stack.run_children(json.loads(sys.argv[1]), dict(__import__("os").environ), max_restarts=2))
"""


def supervise(tmp_path, **children: str) -> subprocess.Popen:
    import json

    commands = {name: [sys.executable, "-c", code] for name, code in children.items()}
    log = open(tmp_path / "supervisor.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-c", SUPERVISE, json.dumps(commands)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def pids(tmp_path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"\[ccp\] {name} started \(pid (\d+)\)",
                                           (tmp_path / "supervisor.log").read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a parent that is gone) is not running either
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_a_child_that_exits_is_restarted_and_sigterm_stops_all(tmp_path):
    # given a child that exits once (the first time it runs) and then keeps running
    marker = tmp_path / "ran-once"
    once = f"import os, sys, time\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w')\n" \
           "    sys.exit(7)\ntime.sleep(600)"
    supervisor = supervise(tmp_path, once=once, steady="import time; time.sleep(600)")
    try:
        # then it is started again, with a log line, and the other child is left alone
        wait_for(lambda: len(pids(tmp_path, "once")) == 2, 20, "the child to be restarted")
        log = (tmp_path / "supervisor.log").read_text()
        assert "[ccp] once exited with 7; restarting it (restart 1 of at most 2 within 60 s)" in log
        assert len(pids(tmp_path, "steady")) == 1
        time.sleep(0.5)
        assert supervisor.poll() is None and alive(pids(tmp_path, "once")[-1])
        # when the supervisor gets SIGTERM (as Ctrl-C), every child stops and it exits 0
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        assert not any(alive(pid) for pid in pids(tmp_path, "once")[-1:] + pids(tmp_path, "steady"))
    finally:
        supervisor.kill()


def test_a_crash_looping_child_stops_everything_with_a_clear_message(tmp_path):
    supervisor = supervise(tmp_path, broken="import sys; sys.exit(3)", steady="import time; time.sleep(600)")
    try:
        assert supervisor.wait(30) == 3
    finally:
        supervisor.kill()
    log = (tmp_path / "supervisor.log").read_text()
    assert len(pids(tmp_path, "broken")) == 3  # the first start and two restarts
    assert "[ccp] broken exited with 3 after 2 restarts within 60 s: it keeps failing, stopping everything" in log
    assert not alive(pids(tmp_path, "steady")[0])
