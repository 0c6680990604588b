"""Faults on the real stack under order load (issue 10, item 9): the worker SIGKILLed during an
auction's apply and during a settlement send, PostgreSQL restarted, Redis restarted. Each time the
system clears again within 30 s by itself, no order answered 202 is lost, every fill is booked once,
and ccp_check passes (money conserved, fund locks equal the chain's balances)."""

import time

import pytest

from tests.faults.conftest import assert_end_state, assert_recovered, wait_auction_applied
from tests.processes import wait_for

pytestmark = pytest.mark.processes


@pytest.fixture
def trading(stack, load):
    """Orders flowing and auctions clearing, then (after the test's fault) recovery within 30 s."""
    load.start()
    wait_auction_applied(stack)

    def recovered(fault_over: float, killed_worker: int | None = None, worker: str = "worker") -> None:
        if killed_worker is not None:
            wait_for(lambda: stack.pid(worker) != killed_worker, 20, "bin/run's supervisor to restart the worker")
        print(f"clearing again {assert_recovered(stack, load, fault_over):.1f} s after the fault")
        time.sleep(3)  # trading goes on a little

    return recovered


def test_the_worker_killed_during_an_auctions_apply(stack, load, trading):
    # when an auction's apply has started (it waits for the pair's book, which the test holds as a
    # cancel does), the auctions queue's worker is SIGKILLed with its pool processes
    with stack.apply_started() as auction:
        killed = stack.kill("worker-auctions")
    fault_over = time.time()
    # then the apply died with it (nothing of it was committed), bin/run's supervisor restarts the
    # worker, and the auction is resumed and applied
    time.sleep(0.5)
    assert stack.sql("SELECT state FROM matching_auction WHERE id = %s", [auction])[0][0] == "solved"
    trading(fault_over, killed, "worker-auctions")
    assert_end_state(stack, load)


def test_the_worker_killed_during_a_settlement_send(stack, load, trading):
    # when the worker is SIGKILLed while it sends a settlement batch (committed, on its way to the node)
    with stack.settlement_send_started() as batch_id:
        killed = stack.kill("worker")
    trading(time.time(), killed)
    # then the batch is confirmed (sent again if the node never got it), once, and every movement settles
    assert_end_state(stack, load, settled=True)
    states = [state for (state,) in stack.sql("SELECT state FROM settlement_settlementbatch WHERE batch_id = %s",
                                              [batch_id])]
    assert states.count("confirmed") == 1, states


def test_postgres_restarted_under_order_load(stack, load, trading):
    time.sleep(3)
    stack.restart_postgres(down_s=5)
    trading(time.time())
    assert_end_state(stack, load)


def test_redis_restarted_under_order_load(stack, load, trading):
    time.sleep(3)
    stack.restart_redis(down_s=2)
    trading(time.time())
    assert_end_state(stack, load)
