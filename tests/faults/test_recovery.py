"""Faults on the real stack under order load (issue 10, item 9): the worker SIGKILLed during an
auction's apply, PostgreSQL restarted, Redis restarted. Each time the system clears again within 30 s
by itself, no order answered 202 is lost, every fill is booked once and ccp_check passes."""

import time

import pytest

from tests.faults.conftest import assert_end_state, assert_recovered, wait_auction_applied
from tests.processes import wait_for

pytestmark = pytest.mark.processes


def test_the_worker_killed_during_an_auctions_apply(stack, load):
    # given orders flowing and auctions clearing
    load.start()
    wait_auction_applied(stack)
    # when an auction's apply has started (it waits for the pair's book, which the test holds as a
    # cancel does), the worker is SIGKILLed with its pool processes
    with stack.apply_started() as auction:
        killed = stack.kill("worker")
    fault_over = time.time()
    # then the apply died with it (nothing of it was committed), bin/run's supervisor restarts the
    # worker, and the auction is resumed and applied
    time.sleep(0.5)
    assert stack.sql("SELECT state FROM matching_auction WHERE id = %s", [auction])[0][0] == "solved"
    wait_for(lambda: stack.pid("worker") != killed, 20, "the supervisor to restart the worker")
    assert_recovered(stack, load, fault_over)
    time.sleep(3)
    assert_end_state(stack, load)


def test_postgres_restarted_under_order_load(stack, load):
    load.start()
    wait_auction_applied(stack)
    time.sleep(3)
    stack.restart_postgres(down_s=5)
    fault_over = time.time()
    assert_recovered(stack, load, fault_over)
    time.sleep(3)
    assert_end_state(stack, load)


def test_redis_restarted_under_order_load(stack, load):
    load.start()
    wait_auction_applied(stack)
    time.sleep(3)
    stack.restart_redis(down_s=2)
    fault_over = time.time()
    assert_recovered(stack, load, fault_over)
    time.sleep(3)
    assert_end_state(stack, load)
