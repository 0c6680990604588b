"""No race over-commits collateral: 50 concurrent orders, each needing 10% of the client's collateral."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connections

from ccp.accounts.models import FundLock
from ccp.orders.models import Order
from tests.factories import ContractFactory, FundLockFactory
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ORDERS = 50


@pytest.fixture
def ten_percent_orders(api_as):
    """A client with 1000 of collateral and a submit function for orders of 100 each (buy 1 call at 100)."""
    contract = ContractFactory()
    fund_lock = FundLockFactory(currency=contract.collateral, fundlock=D("1000"))
    api_as(fund_lock.client)  # the token, before the threads start

    def submit(n: int) -> int:
        try:
            body = {"client_order_id": f"race-{n}", "contract": contract.symbol, "side": "buy", "price": "100",
                    "quantity": "1"}
            return api_as(fund_lock.client).post("/api/v1/orders", body, format="json").status_code
        finally:
            connections.close_all()  # each thread has its own connection

    return fund_lock, submit


def submit_concurrently(submit) -> list[int]:
    with ThreadPoolExecutor(max_workers=25) as pool:
        return list(pool.map(submit, range(ORDERS)))


def assert_collateral_never_over_committed(fund_lock) -> None:
    states = list(Order.objects.values_list("state", flat=True))
    assert len(states) == ORDERS and "received" not in states
    assert states.count("accepted") == 10 and states.count("rejected") == ORDERS - 10
    fund_lock.refresh_from_db()
    assert fund_lock.order_value == D("1000") and fund_lock.available == 0
    locked = sum(Order.objects.filter(state="accepted").values_list("order_value", flat=True))
    assert locked == fund_lock.order_value


def test_concurrent_submits_validated_in_their_requests_never_over_commit(ten_percent_orders):
    from celery_app import app

    fund_lock, submit = ten_percent_orders
    app.conf.task_always_eager = True  # each request's commit runs its validation in that thread
    try:
        statuses = submit_concurrently(submit)
    finally:
        app.conf.task_always_eager = False
    assert statuses == [202] * ORDERS
    assert_collateral_never_over_committed(fund_lock)


@pytest.mark.processes
def test_concurrent_submits_validated_by_a_celery_worker_never_over_commit(ten_percent_orders, children):
    # given a real worker (two processes) consuming from Redis
    fund_lock, submit = ten_percent_orders
    children.worker("--concurrency", "2")
    # when 50 orders arrive at once
    assert submit_concurrently(submit) == [202] * ORDERS
    # then the worker validates every one, and at most 10 fit
    wait_for(lambda: not Order.objects.filter(state="received").exists(), 90, "the worker to validate all orders")
    assert_collateral_never_over_committed(fund_lock)
    assert FundLock.objects.count() == 1
