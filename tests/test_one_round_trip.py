"""``ccp.db.one_round_trip``: statements sent together, each still its own (its own snapshot, after the one before
it ended), and a matcher run's round trips counted on the wire (libpq's trace of the messages psycopg sends)."""

import tempfile
import threading
import time
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from ccp.book import services as book_services
from ccp.book.services import book_match
from ccp.db import Sent, one_round_trip
from ccp.orders.services import OrderRequest, order_submit
from tests.book.test_matcher_kill import continuous
from tests.conftest import NOW
from tests.factories import FundLockFactory

pytestmark = pytest.mark.django_db(transaction=True)
book_services_result_json = book_services.result_json


def _params() -> dict:
    db = connection.settings_dict
    return {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}


def test_a_statement_sees_what_the_lock_wait_of_the_one_before_it_let_commit():
    # given a fund lock another transaction holds, and changes before it commits
    fund_lock = FundLockFactory(fundlock=D("10"))
    with psycopg.connect(**_params()) as other:
        other.execute("SELECT id FROM accounts_fundlock WHERE id = %s FOR NO KEY UPDATE", [fund_lock.pk])
        other.execute("UPDATE accounts_client SET stream_sequence = stream_sequence + 5 WHERE id = %s",
                      [fund_lock.client_id])
        commit = threading.Timer(0.3, other.commit)
        commit.start()
        # when one round trip locks the fund lock (it waits for the other transaction), then reads the client
        started = time.monotonic()
        with transaction.atomic(), one_round_trip():
            locked = Sent("SELECT id FROM accounts_fundlock WHERE id = %s FOR NO KEY UPDATE", [fund_lock.pk])
            read = Sent("SELECT stream_sequence FROM accounts_client WHERE id = %s", [fund_lock.client_id])
        commit.join()
    # then the lock waited, and the read after it saw what the other transaction committed
    assert time.monotonic() - started >= 0.25
    assert locked.result() == [(fund_lock.pk,)]
    assert read.result() == [(5,)]


def test_an_error_in_the_round_trip_is_djangos_and_stops_the_statements_after_it():
    fund_lock = FundLockFactory(fundlock=D("10"))
    with pytest.raises(DatabaseError), transaction.atomic(), one_round_trip():
        Sent("SELECT 1/0", [])
        Sent("UPDATE accounts_fundlock SET fundlock = 0 WHERE id = %s RETURNING id", [fund_lock.pk])
    fund_lock.refresh_from_db()
    assert fund_lock.fundlock == D("10")


def _round_trips(run) -> tuple[int, int]:
    """(round trips, statements) of ``run`` on the wire: a round trip ends with a Sync, or is a simple Query
    (psycopg's COMMIT); a statement is an Execute (a prepared one is sent without its Parse) or a Query."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.NamedTemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            run()
        finally:
            pgconn.untrace()
        messages = [line.split("\t")[3] for line in Path(trace.name).read_text().splitlines()
                    if line.count("\t") >= 3 and line.split("\t")[1] == "F"]
    return messages.count("Sync") + messages.count("Query"), messages.count("Execute") + messages.count("Query")


def _limit(client, contract, side, coid):
    order_submit(client=client, now=NOW, validate_later=False, request=OrderRequest(
        client_order_id=coid, contract=contract, side=side, kind="limit", price=D("100"), quantity=D("2")))


def _crossing_buy_waiting():
    """A continuous contract with a resting sell (its run rebuilt the engine) and another client's crossing buy
    waiting for the matcher; returns the contract."""
    (contract,) = continuous(0)
    maker = FundLockFactory(currency=contract.collateral, fundlock=D("5000"))
    taker = FundLockFactory(currency=contract.collateral, fundlock=D("5000"))
    _limit(maker.client, contract, "sell", "rest")
    assert book_match(contract_id=contract.pk, now=NOW) == 1
    _limit(taker.client, contract, "buy", "take")
    return contract


def test_a_matcher_run_with_a_trade_takes_seven_round_trips():
    # given a resting sell (its run rebuilt the engine), then a crossing buy of another client
    contract = _crossing_buy_waiting()
    # when the matcher books the trade
    trips, statements = _round_trips(lambda: book_match(contract_id=contract.pk, now=NOW))
    # then its 15 statements (BEGIN and COMMIT included) took 7 round trips (16 before one_round_trip): BEGIN;
    # the contracts and their orders; the run's fund locks and its clients; the maker's fund lock and the
    # booking's read; the booking's writes with the positions' and lockups' reads; the upserts with the last
    # statement; COMMIT
    assert (trips, statements) == (7, 15)


def test_a_matcher_run_builds_its_orders_answers_while_postgresql_books_its_trade(monkeypatch):
    # given a resting sell (its run rebuilt the engine), then a crossing buy of another client
    contract = _crossing_buy_waiting()
    built = []

    def result_json(payload):
        pgconn = connection.connection.pgconn
        built.append((payload["client_order_id"], pgconn.pipeline_status != 0, pgconn.flush()))
        return book_services_result_json(payload)

    monkeypatch.setattr(book_services, "result_json", result_json)
    # when the matcher books the trade
    assert book_match(contract_id=contract.pk, now=NOW) == 1
    # then the taker's answer was built inside the booking's round trip, with its statements all sent (nothing
    # left in libpq's buffer): PostgreSQL writes the trade and reads the positions while the process builds it
    assert built == [("take", True, 0)]
