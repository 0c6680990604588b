"""A large booking writes on a thread while it computes (``ccp.db.Behind``, above ``BEHIND_ABOVE`` executions):
the same rows, the same events in the same order, and a refused write fails the whole booking as before."""

import threading
from decimal import Decimal as D

import pytest
from django.db import IntegrityError

import ccp.clearing.booking as booking
from ccp.clearing.services import Execution
from ccp.db import Behind
from ccp.risk.models import Position
from tests.clearing.test_booking_paths import book
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.matching.test_auction_flow import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def threads(monkeypatch) -> list[str]:
    """The names of the threads the booking's writes ran on."""
    names: list[str] = []
    run = Behind._run

    def recorded(self, work):
        names.append(threading.current_thread().name)
        return run(self, work)

    monkeypatch.setattr(Behind, "_run", recorded)
    return names


def market():
    contract = ContractFactory()
    clients = [FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client for _ in range(4)]
    alice, bob, carol, dave = clients
    # dave holds a position in the contract: his lockup changes with his fill
    Position.objects.create(client=dave, contract=contract, quantity=D("0.3"), updated_at=NOW)
    buys = [place(alice, contract, "buy", "2100", "1"), place(bob, contract, "buy", "2080", "0.6")]
    sells = [place(carol, contract, "sell", "2000", "0.4"), place(dave, contract, "sell", "2050", "0.5"),
             place(carol, contract, "sell", "2060", "0.5")]
    executions = [Execution(contract.pk, D("2050"), D("0.4"), buys[0].pk, alice.pk, sells[0].pk, carol.pk),
                  Execution(contract.pk, D("2050"), D("0.5"), buys[0].pk, alice.pk, sells[1].pk, dave.pk),
                  Execution(contract.pk, D("2050"), D("0.1"), buys[0].pk, alice.pk, sells[2].pk, carol.pk),
                  Execution(contract.pk, D("2050"), D("0.4"), buys[1].pk, bob.pk, sells[2].pk, carol.pk)]
    return executions, {buys[1].pk: "ioc_leftover"}, {(bob.pk, contract.collateral_id): D("5")}


def numbered_from_one(messages):
    """The messages with their fill events' trade ids counted from the booking's first (a sequence hands out
    ids, and a rollback does not give them back)."""
    first = min(t for _, m in messages for e in m["events"] if e["type"] == "fill" for t in e["trades"])
    return [(client_id, {**m, "events": [{**e, "trades": [t - first + 1 for t in e["trades"]]} if e["type"] == "fill"
                                         else e for e in m["events"]]}) for client_id, m in messages]


def test_the_threaded_booking_writes_the_rows_and_events_of_the_plain_one(monkeypatch, threads):
    executions, cancels, held = market()
    plain = book(executions, cancels, held, merged=True)
    assert threads == []  # four executions: no thread
    monkeypatch.setattr(booking, "BEHIND_ABOVE", 0)
    threaded = book(executions, cancels, held, merged=True)
    assert threads and all(name.startswith("behind") for name in threads)
    assert threaded["rows"] == plain["rows"]
    assert all(plain["rows"])  # trades, orders, history, positions, cash, fund locks and lockups written
    assert numbered_from_one(threaded["messages"]) == numbered_from_one(plain["messages"])
    assert threaded["levels"] == plain["levels"]
    assert (threaded["filled"], threaded["own"], threaded["others"]) == (plain["filled"], plain["own"],
                                                                       plain["others"])


def test_with_every_fund_lock_held_the_threaded_booking_reads_positions_before_its_first_write(monkeypatch):
    executions, cancels, held = market()
    plain = book(executions, cancels, held, merged=True, lock_all=True)
    steps: list[str] = []
    read, run = booking.positions_read, Behind._run
    monkeypatch.setattr(booking, "positions_read", lambda *a, **k: steps.append("read") or read(*a, **k))
    monkeypatch.setattr(Behind, "_run", lambda self, work: steps.append("write") or run(self, work))
    monkeypatch.setattr(booking, "BEHIND_ABOVE", 0)
    threaded = book(executions, cancels, held, merged=True, lock_all=True)
    # Read once, ahead of every write: the computing never waits for the thread's writes to read positions.
    assert steps[0] == "read" and steps.count("read") == 1 and "write" in steps
    assert threaded["rows"] == plain["rows"]
    assert all(plain["rows"])
    assert numbered_from_one(threaded["messages"]) == numbered_from_one(plain["messages"])
    assert (threaded["levels"], threaded["filled"], threaded["own"], threaded["others"]) == (
        plain["levels"], plain["filled"], plain["own"], plain["others"])


def test_a_fund_lock_the_database_refuses_fails_the_threaded_booking_whole(monkeypatch, threads):
    executions, cancels, held = market()
    held = {key: D("1000000") for key in held}  # more order value than bob's collateral: refused
    with pytest.raises(IntegrityError, match="fund"):
        book(executions, cancels, held, merged=True)
    monkeypatch.setattr(booking, "BEHIND_ABOVE", 0)
    with pytest.raises(IntegrityError, match="fund"):
        book(executions, cancels, held, merged=True)
    assert threads
