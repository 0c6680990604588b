"""``ccp.db.Behind``: writes of the caller's transaction run on a thread, on the caller's connection, in the
order queued; an error reaches the caller and its transaction rolls back whole."""

import threading
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ccp.db import Behind, bulk_insert_write, bulk_update_rows, bulk_update_write
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from tests.factories import ClientFactory, ContractFactory

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


def position(now, contract=None):
    return Position.objects.create(client=ClientFactory(), contract=contract or ContractFactory(), quantity=D(1),
                                   updated_at=now)


def test_the_writes_run_on_a_thread_in_order_in_the_callers_transaction(now):
    row = position(now)
    threads, backends = [], []

    def write(quantity):
        def work():
            threads.append(threading.current_thread().name)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.append(cursor.fetchone()[0])
            bulk_update_rows(Position, [{"id": row.pk, "quantity": D(quantity)}], ["quantity"])
            return quantity
        return work

    with transaction.atomic():
        with Behind() as behind:
            behind.run(write("2"))
            behind.run(write("3"))
            assert behind.wait() == ["2", "3"]
        assert Position.objects.get(pk=row.pk).quantity == D("3")  # the last one queued wrote last
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert set(backends) == {cursor.fetchone()[0]}  # the caller's own connection
    assert all(name.startswith("behind") for name in threads) and len(threads) == 2


def test_a_failed_write_is_raised_to_the_caller_and_the_writes_after_it_are_skipped(now):
    row = position(now)
    other = position(now, row.contract)
    ran = []

    def fail():
        with connection.cursor() as cursor:  # a second row with the same (client, contract)
            cursor.execute("INSERT INTO risk_position (client_id, contract_id, quantity, cost, realised_pnl, "
                           "margin_mode, margin, updated_at) SELECT client_id, contract_id, 0, 0, 0, '', 0, "
                           "updated_at FROM risk_position WHERE id = %s", [row.pk])

    with pytest.raises(IntegrityError), transaction.atomic():
        with Behind() as behind:
            behind.run(lambda: bulk_update_rows(Position, [{"id": other.pk, "quantity": D("5")}], ["quantity"]))
            behind.run(fail)
            behind.run(lambda: ran.append("after"))
    assert ran == []
    assert Position.objects.get(pk=other.pk).quantity == D("1")  # rolled back with the caller's transaction


def test_the_callers_own_failure_waits_for_the_thread_and_rolls_everything_back(now):
    row = position(now)
    started = threading.Event()

    def slow():
        started.set()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")
        bulk_update_rows(Position, [{"id": row.pk, "quantity": D("7")}], ["quantity"])

    with pytest.raises(Rollback), transaction.atomic():
        with Behind() as behind:
            behind.run(slow)
            started.wait()
            raise Rollback
    assert Position.objects.get(pk=row.pk).quantity == D("1")


def test_without_a_thread_each_write_runs_at_once(now):
    row = position(now)
    behind = Behind(threaded=False)
    behind.run(lambda: bulk_update_rows(Position, [{"id": row.pk, "quantity": D("4")}], ["quantity"]))
    assert Position.objects.get(pk=row.pk).quantity == D("4")
    assert behind.wait() == [None]


def test_held_writes_go_in_one_statement_before_the_next_work_and_keep_each_tables_order(now):
    """Not threaded, ``Behind.write`` holds its writes and sends them when the caller runs a work or waits: writes
    of different tables as one statement; a second write of a table starts the next statement, sent after the
    first in the same round trip, so each table's rows keep their order."""
    row = position(now)
    contract, client = row.contract, row.client

    def cash(amount):
        return {"client_id": client.pk, "currency_id": contract.collateral_id, "amount": D(amount),
                "contract_id": contract.pk, "position_delta": D(0), "origin": "book", "origin_ref": f"test-{amount}",
                "created_at": now}

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with Behind(threaded=False) as behind:
            behind.write(bulk_update_write(Position, [{"id": row.pk, "quantity": D("4")}], ["quantity"]))
            behind.write(bulk_insert_write(CashMovement, [cash("1"), cash("2")]))
            assert queries.captured_queries == []  # held
            behind.write(bulk_insert_write(CashMovement, [cash("3")]))  # a second one of the table
            assert queries.captured_queries == []  # still held: the next statement
            behind.run(lambda: None)
            assert len(queries.captured_queries) == 2  # the two first in one statement, then the third
        assert Position.objects.get(pk=row.pk).quantity == D("4")
    assert list(CashMovement.objects.filter(client=client).order_by("id").values_list("amount", flat=True)) == [
        D("1"), D("2"), D("3")]
