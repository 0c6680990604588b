"""Celery queue routing across processes: the workers as bin/run starts them (one per queue), an
order validated while a long auction solve occupies the auction worker."""

from decimal import Decimal

import pytest
import redis
from django.conf import settings

from ccp.clock import utcnow
from ccp.matching.tasks import auction_solve_task
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_submit
from celery_app import QUEUES, app
from tests.factories import ContractFactory, FundLockFactory
from tests.processes import wait_for
from tests.system.held_solve_app import HELD_SOLVE_KEY

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("task", "queue"), [
    ("orders.validate", "orders"), ("orders.requeue_stale", "orders"), ("matching.close", "auctions"),
    ("matching.solve", "auctions"), ("matching.apply", "auctions"), ("matching.start_auctions", "celery"),
    ("settlement.submit", "celery"), ("prices.load_spot", "celery"), ("system.heartbeat", "celery")])
def test_tasks_are_routed_to_their_queue(task, queue):
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_a_worker_without_queues_consumes_every_queue():
    assert sorted(app.amqp.queues) == sorted(QUEUES)


def test_a_task_lands_in_its_queue_only():
    store = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with app.connection_for_write() as connection:  # every queue bound, as running workers have them
        for queue in app.amqp.queues.values():
            queue(connection.default_channel).declare()
    before = {queue: store.llen(queue) for queue in QUEUES}
    auction_solve_task.delay(-1)
    try:
        assert {queue: store.llen(queue) - before[queue] for queue in QUEUES} == {
            **{queue: 0 for queue in QUEUES}, "auctions": 1}
    finally:
        store.lpop("auctions")


def test_a_contracts_matcher_lands_in_its_book_queue_only(settings):
    """One matcher task per book queue is queued at a time, whichever of the queue's contracts asks (a run
    takes the work of all of them); a price move queues the named contract's own task, once."""
    from ccp.book.tasks import book_match_later

    store = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue(connection.default_channel).declare()
    redis.Redis.from_url(settings.REDIS_URL).delete(  # none queued yet
        "ccp:book-match-queued:book-0", "ccp:book-match-queued:prices:7")
    before = {queue: store.llen(queue) for queue in QUEUES}
    book_match_later(7)  # one book queue (CCP_BOOK_QUEUES 1): book-0
    book_match_later(7)  # queued and not started: not queued again
    book_match_later(8)  # another contract of the same queue: that task takes its orders too
    book_match_later(7, prices=True)  # a price move: the contract's own task
    book_match_later(7, prices=True)
    try:
        assert {queue: store.llen(queue) - before[queue] for queue in QUEUES} == {
            **{queue: 0 for queue in QUEUES}, "book-0": 2}
    finally:
        store.lpop("book-0", 2)


def test_an_order_is_validated_while_a_long_solve_occupies_the_auction_worker(children):
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.delete(*(f"{HELD_SOLVE_KEY}:{k}" for k in ("started", "release", "finished")))
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000")).client
    # given the auctions and orders workers as bin/run starts them, each on its own queue
    children.start("worker-auctions", "-m", "celery", "-A", "tests.system.held_solve_app", "worker", "-Q", "auctions",
                   "-n", "auctions@%h", "--pool", "solo", "--without-mingle", "--without-gossip")
    children.start("worker-orders", "-m", "celery", "-A", "celery_app", "worker", "-Q", "orders", "-n", "orders@%h",
                   "--pool", "solo", "--without-mingle", "--without-gossip")
    # and an auction solve that holds the auction worker until the test releases it
    auction_solve_task.delay(1)
    wait_for(lambda: store.exists(f"{HELD_SOLVE_KEY}:started"), 60, "the auction worker to start the solve")
    try:
        # when an order arrives
        order, _ = order_submit(client=client, request=OrderRequest(
            client_order_id="during-solve", contract=contract, side="buy", kind="limit", price=Decimal("100"),
            quantity=Decimal("1")), now=utcnow())
        # then it is validated while the solve still runs
        wait_for(lambda: Order.objects.get(pk=order.pk).state != "received", 60, "the order's validation")
        assert Order.objects.get(pk=order.pk).state == "accepted"
        assert not store.exists(f"{HELD_SOLVE_KEY}:finished")
    finally:
        store.set(f"{HELD_SOLVE_KEY}:release", 1)
    wait_for(lambda: store.exists(f"{HELD_SOLVE_KEY}:finished"), 60, "the solve to finish once released")
