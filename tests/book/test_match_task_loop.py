"""``book_match_task`` runs on while its runs find work, holding its queue's flag: the orders stored meanwhile
queue no task (the real broker's queue stays empty) and its next run takes them; a run that finds nothing
lets the flag go and looks once more, so an order stored while the flag was held is never left behind."""

from decimal import Decimal as D

import pytest
import redis
from django.conf import settings

from ccp.book import tasks
from ccp.book.tasks import book_match_task, book_queue
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_submit
from tests.book.test_matcher_kill import continuous
from tests.conftest import NOW
from tests.factories import FundLockFactory

pytestmark = pytest.mark.django_db


def enter(client, contract, coid, side, *, later):
    return order_submit(client=client, now=NOW, validate_later=later, request=OrderRequest(
        client_order_id=coid, contract=contract, side=side, kind="limit", price=D("100"), quantity=D("1")))[0]


@pytest.fixture
def market(monkeypatch, django_capture_on_commit_callbacks):
    """A continuous contract, two traders, the flag of its queue as the server that queued the task left it, an
    empty broker queue, and ``runs(first)``: the task's runs recorded (orders each took, whether the flag was
    held during it), ``first`` called right after the first run (an order entered as the server enters it)."""
    (contract,) = continuous(0)
    traders = [FundLockFactory(currency=contract.collateral, fundlock=D("5000")).client for _ in range(2)]
    store, broker = redis.Redis.from_url(settings.REDIS_URL), redis.Redis.from_url(settings.CELERY_BROKER_URL)
    flag, queue = f"ccp:book-match-queued:{book_queue(contract.pk)}", book_queue(contract.pk)
    store.set(flag, 1, ex=tasks.QUEUED_TTL_S)
    broker.delete(queue)
    real, seen = tasks.books_match, []

    def runs(first):
        def run(**kwargs):
            held = bool(store.exists(flag))
            taken = real(**kwargs)
            seen.append((sum(taken.values()), held))
            if len(seen) == 1:
                with django_capture_on_commit_callbacks(execute=True):  # committed: its flag, or its task
                    first()
            return taken

        monkeypatch.setattr(tasks, "books_match", run)
        return seen

    yield contract, traders, runs, lambda: (bool(store.exists(flag)), broker.llen(queue))
    broker.delete(queue)
    store.delete(flag)


def test_an_order_stored_during_a_run_queues_no_task_and_the_next_run_takes_it(market):
    contract, (a, b), runs, flag_and_queued = market
    enter(a, contract, "bid", "buy", later=False)
    seen = runs(lambda: enter(b, contract, "ask", "sell", later=True))

    assert book_match_task.run(contract.pk) == 2
    assert seen == [(1, True), (1, True), (0, True), (0, False)]  # the last look after the flag went
    assert flag_and_queued() == (False, 0)  # no task queued; the flag let go
    assert set(Order.objects.filter(contract=contract).values_list("state", flat=True)) == {"filled"}


def test_an_order_stored_while_an_empty_run_held_the_flag_is_taken_by_the_look_after_it(market):
    contract, (a, _), runs, flag_and_queued = market
    seen = runs(lambda: enter(a, contract, "bid", "buy", later=True))

    assert book_match_task.run(contract.pk) == 1
    assert seen == [(0, True), (1, False), (0, True), (0, False)]
    assert flag_and_queued() == (False, 0)
    assert Order.objects.get(contract=contract).state == "accepted"


def test_a_task_still_finding_work_after_its_time_queues_its_successor_and_ends(market, monkeypatch):
    """A price move's task queued behind a busy matcher gets its turn: after RUNS_FOR_S the task ends with a
    successor queued behind it, the flag still held (the orders stored meanwhile queue no third task)."""
    contract, (a, b), runs, flag_and_queued = market
    monkeypatch.setattr(tasks, "RUNS_FOR_S", 0.0)
    enter(a, contract, "bid", "buy", later=False)
    seen = runs(lambda: enter(b, contract, "ask", "sell", later=True))

    assert book_match_task.run(contract.pk) == 1
    assert seen == [(1, True)]
    assert flag_and_queued() == (True, 1)  # the successor; the flag held for it
    assert Order.objects.get(contract=contract, client_order_id="ask").state == "received"  # the successor's


def test_a_failed_run_lets_the_flag_go(market, monkeypatch):
    contract, (a, _), runs, flag_and_queued = market
    enter(a, contract, "bid", "buy", later=False)

    def fail(**_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(tasks, "books_match", fail)
    with pytest.raises(RuntimeError):
        book_match_task.run(contract.pk)
    assert flag_and_queued() == (False, 0)  # the next order stored queues a task at once
