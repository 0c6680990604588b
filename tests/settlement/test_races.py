"""Two settlement workers at once, with real threads against the real database: concurrent submits send
each batch once and the loser is a quiet no-op; a confirm run counts only the batches it settled itself."""

import logging
import threading

import pytest
from django.db import connection, transaction

from ccp.accounts.models import FundLock
from ccp.settlement.models import OperatorNonce, SettlementBatch
from ccp.settlement.services import settlement_confirm, settlement_submit
from tests.conftest import NOW
from tests.processes import wait_for
from tests.settlement.evm import assert_settled_once, book

pytestmark = pytest.mark.django_db(transaction=True)


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view is read once, then cached
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0]


def in_thread(work, results: list, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_concurrent_submits_send_each_batch_once_and_the_loser_is_quiet(funded, caplog):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    movements = book(usdc, "auction-1", {alice: -1, bob: 1})
    OperatorNonce.objects.create(address=operator.address.lower(), next_nonce=client.nonce(operator.address))
    results, errors = [], []
    caplog.set_level(logging.INFO)
    with transaction.atomic():
        # Hold the lock every sender takes: both workers read the same pending movements, then queue here.
        OperatorNonce.objects.select_for_update().get()
        threads = [in_thread(lambda: settlement_submit(chain=client, operator=operator, house=house, now=NOW),
                             results, errors) for _ in range(2)]
        wait_for(lambda: lock_waiters() >= 2, 30, "both workers waiting for the operator's nonce")
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(sent) for sent in results) == [0, 1]
    assert SettlementBatch.objects.count() == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    w3.testing.mine(3)
    settlement_confirm(chain=client, now=NOW)
    assert_settled_once(client, token, movements)


def test_a_confirm_run_counts_only_the_batches_it_settled(funded):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    book(usdc, "auction-1", {alice: -4, bob: 4})
    settlement_submit(chain=client, operator=operator, house=house, now=NOW)  # sent after its commit
    w3.testing.mine(3)
    results, errors = [], []
    with transaction.atomic():
        batch = SettlementBatch.objects.select_for_update().get()  # another worker is confirming it
        thread = in_thread(lambda: settlement_confirm(chain=client, operator=operator, house=house, now=NOW),
                           results, errors)
        wait_for(lambda: lock_waiters() >= 1, 30, "the second worker waiting for the batch")
        theirs = settlement_confirm(chain=client, now=NOW)
    thread.join()
    assert errors == []
    assert (theirs["confirmed"], results[0]["confirmed"]) == (1, 0)
    batch.refresh_from_db()
    assert batch.state == "confirmed"
    assert FundLock.objects.get(client__address=alice.lower()).fundlock == 996
