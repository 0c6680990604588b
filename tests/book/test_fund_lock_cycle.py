"""A matcher run meets its makers only as it matches: their fund locks come after those of its incoming orders'
clients. Taken with a wait, that second statement could close a cycle with a transaction that locks both in
the one order (``ccp.locks``: another queue's matcher, an auction's apply), which PostgreSQL broke after a
second by failing one of them. The run takes them without waiting (``FundLocksBusy``), is rolled back and runs
again with them among its first fund locks (``ccp.book.services.books_match``)."""

import threading
import time
from decimal import Decimal as D

import psycopg
import pytest
from django.db import connection

from ccp.book import services
from ccp.book.services import book_match, books_match
from ccp.clearing.models import Trade
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_submit
from ccp.system.invariants import invariants_check
from tests.book.test_matcher_kill import continuous
from tests.conftest import NOW
from tests.factories import FundLockFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _limit(client, contract, side, coid) -> Order:
    order, _ = order_submit(client=client, now=NOW, validate_later=False, request=OrderRequest(
        client_order_id=coid, contract=contract, side=side, kind="limit", price=D("100"), quantity=D("2")))
    return order


def _lock_waiter(session) -> bool:
    return bool(session.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                                ).fetchone()[0])


def test_a_run_meeting_a_maker_whose_fund_lock_another_transaction_holds_never_closes_a_cycle(monkeypatch):
    # given a maker resting a sell, then a taker's crossing buy received (the maker's fund lock has the lower id)
    (contract,) = continuous(0)
    maker = FundLockFactory(currency=contract.collateral, fundlock=D("5000"))
    taker = FundLockFactory(currency=contract.collateral, fundlock=D("5000"))
    assert maker.pk < taker.pk
    _limit(maker.client, contract, "sell", "rest")
    assert book_match(contract_id=contract.pk, now=NOW) == 1
    buy = _limit(taker.client, contract, "buy", "take")
    monkeypatch.setattr(services, "_BUSY", {}, raising=False)

    # and a run that stops once it holds the taker's fund lock (its first fund lock statement)
    holding, go, attempts = threading.Event(), threading.Event(), []
    clients_read = services._clients_read

    def paused(run, *args):
        attempts.append(sorted(key[0] for key in run.fund_locks))
        if len(attempts) == 1:
            holding.set()
            assert go.wait(10)
        return clients_read(run, *args)

    monkeypatch.setattr(services, "_clients_read", paused)
    results, failures = [], []

    def matcher():
        try:
            results.append(books_match(contract_id=contract.pk, now=NOW, queues=1))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    other_failures = []

    def other_transaction(session):
        """Both fund locks in one statement, in id order (as an auction's apply takes its clients'), then commit."""
        try:
            session.execute("SELECT id FROM accounts_fundlock WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                            [[maker.pk, taker.pk]])
            time.sleep(0.2)  # holding both while the run tries again
            session.commit()
        except psycopg.Error as exc:
            other_failures.append(exc)
            session.rollback()

    run = threading.Thread(target=matcher)
    run.start()
    assert holding.wait(10)
    with psycopg.connect(**params) as session, psycopg.connect(**params, autocommit=True) as watcher:
        # when another transaction takes the maker's fund lock and waits for the taker's, which the run holds
        other = threading.Thread(target=other_transaction, args=(session,))
        other.start()
        for _ in range(500):
            if _lock_waiter(watcher):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the other transaction never waited for the taker's fund lock")
        # and the run goes on to book the trade with the maker
        go.set()
        run.join(20)
        other.join(20)

    # then neither failed: the run let go of what it held, the other transaction committed, the run matched
    assert not failures and not other_failures, (failures, other_failures)
    assert results == [{contract.pk: 1}]
    # the run was run again with the maker's fund lock among its first
    assert attempts == [[taker.client_id], sorted([maker.client_id, taker.client_id])]
    buy.refresh_from_db()
    assert buy.state == "filled"
    assert list(Trade.objects.filter(contract=contract).values_list("quantity", flat=True)) == [D("2")]
    assert invariants_check().ok


def test_fund_locks_found_held_are_taken_first_for_a_while_then_dropped(monkeypatch):
    monkeypatch.setattr(services, "_BUSY", {})
    monkeypatch.setattr(services, "BUSY_KEPT", 2)
    services._busy_note([(1, 9)])
    services._busy_note([(2, 9), (3, 9)])
    assert list(services._BUSY) == [(2, 9), (3, 9)]  # the oldest dropped beyond BUSY_KEPT
    services._busy_note([(2, 9), (4, 9)], known_only=True)  # a maker met again: kept; one never held: not noted
    assert list(services._BUSY) == [(3, 9), (2, 9)]
    assert books_match(contract_id=987654321, now=NOW) == {}
    assert list(services._BUSY) == [(3, 9), (2, 9)]  # within BUSY_KEEP_S
    monkeypatch.setattr(services, "BUSY_KEEP_S", -1.0)
    assert books_match(contract_id=987654321, now=NOW) == {}
    assert services._BUSY == {}
