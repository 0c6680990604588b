"""bin/run's supervisor (``run_children`` in bin/stack.py): a child that exits is restarted with a log
line, a crash-looping one stops everything with a clear message, SIGTERM stops every child."""

import signal
import sys
import time

from tests.processes import Supervisor, alive, wait_for


def supervise(tmp_path, **children: str) -> Supervisor:
    return Supervisor({name: [sys.executable, "-c", code] for name, code in children.items()},
                      tmp_path / "supervisor.log", max_restarts=2)


def test_a_child_that_exits_is_restarted_and_sigterm_stops_all(tmp_path):
    # given a child that exits once (the first time it runs) and then keeps running
    marker = tmp_path / "ran-once"
    once = f"import os, sys, time\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w')\n" \
           "    sys.exit(7)\ntime.sleep(600)"
    supervisor = supervise(tmp_path, once=once, steady="import time; time.sleep(600)")
    try:
        # then it is started again, with a log line, and the other child is left alone
        wait_for(lambda: len(supervisor.pids("once")) == 2, 20, "the child to be restarted")
        log = supervisor.log.read_text()
        assert "[ccp] once exited with 7; restarting it (restart 1 of at most 2 within 60 s)" in log
        assert len(supervisor.pids("steady")) == 1
        time.sleep(0.5)
        assert supervisor.proc.poll() is None and alive(supervisor.pids("once")[-1])
        # when the supervisor gets SIGTERM (as Ctrl-C), every child stops and it exits 0
        supervisor.proc.send_signal(signal.SIGTERM)
        assert supervisor.proc.wait(30) == 0
        assert not any(alive(pid) for pid in supervisor.pids("once")[-1:] + supervisor.pids("steady"))
    finally:
        supervisor.stop()


def test_a_crash_looping_child_stops_everything_with_a_clear_message(tmp_path):
    supervisor = supervise(tmp_path, broken="import sys; sys.exit(3)", steady="import time; time.sleep(600)")
    try:
        assert supervisor.proc.wait(30) == 3
    finally:
        supervisor.stop()
    assert len(supervisor.pids("broken")) == 3  # the first start and two restarts
    assert ("[ccp] broken exited with 3 after 2 restarts within 60 s: it keeps failing, stopping everything"
            in supervisor.log.read_text())
    assert not alive(supervisor.pids("steady")[0])
