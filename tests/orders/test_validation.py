"""The validator: each rule accepts or rejects with its code; collateral is locked and released exactly."""

from datetime import UTC, datetime, time
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.errors import ApplicationError
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.services import order_cancel, order_transition, order_validate
from ccp.orders.tasks import order_validate_task
from tests.factories import EXPIRY, ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded(now):
    """A client with 1000 USDC of collateral, and a call struck at 100000 on [50000, 150000]."""
    contract = ContractFactory()
    fund_lock = FundLockFactory(currency=contract.collateral, fundlock=D("1000"))
    return contract, fund_lock


def validate(order, now) -> Order:
    order_validate(order_id=order.pk, now=now)
    order.refresh_from_db()
    return order


def order_value_of(fund_lock) -> D:
    fund_lock.refresh_from_db()
    return fund_lock.order_value


@pytest.mark.parametrize(
    ("kind", "side", "price", "quantity", "locked"),
    [
        ("call", "buy", "100", "1", "100"),  # the premium
        ("call", "buy", "12", "0.45", "5.4"),  # 12 * 0.45
        ("call", "sell", "49900", "0.02", "2"),  # (max payoff 50000 - 49900) * 0.02
        ("put", "buy", "300", "2", "600"),
        ("future", "buy", "50500", "1", "500"),  # price - floor 50000
        ("future", "sell", "149500", "1", "500"),  # cap 150000 - price
    ],
)
def test_accepted_orders_lock_their_worst_case(now, kind, side, price, quantity, locked):
    strike = None if kind == "future" else D("100000")
    contract = ContractFactory(kind=kind, strike_px=strike)
    fund_lock = FundLockFactory(currency=contract.collateral, fundlock=D("1000"))
    order = ReceivedOrderFactory(client=fund_lock.client, contract=contract, side=side, price=D(price),
                                 quantity=D(quantity))

    order = validate(order, now)

    assert (order.state, order.reject_reason, order.order_value) == ("accepted", "", D(locked))
    assert order_value_of(fund_lock) == D(locked)
    assert list(order.history.values_list("from_state", "to_state")) == [("received", "accepted")]


@pytest.mark.parametrize(
    ("change", "contract_change", "at", "code"),
    [
        ({}, {"state": "halted"}, None, "contract_halted"),
        ({}, {"state": "expired"}, None, "contract_not_tradeable"),
        ({}, {}, datetime.combine(EXPIRY, time(0), tzinfo=UTC), "contract_halted"),
        ({"price": D("100.5")}, {}, None, "price_off_tick"),
        ({"price": D("50001")}, {}, None, "price_out_of_bounds"),  # a call pays at most cap - strike = 50000
        ({"quantity": D("0.015")}, {}, None, "quantity_off_lot"),
        ({"price": D("1001")}, {}, None, "insufficient_collateral"),
    ],
)
def test_orders_breaking_a_rule_are_rejected_with_its_code(funded, now, change, contract_change, at, code):
    contract, fund_lock = funded
    for field, value in contract_change.items():
        setattr(contract, field, value)
    contract.save()
    order = ReceivedOrderFactory(client=fund_lock.client, contract=contract, **change)

    order = validate(order, at or now)

    assert (order.state, order.reject_reason, order.order_value) == ("rejected", code, 0)
    assert order_value_of(fund_lock) == 0
    assert list(order.history.values_list("to_state", "reason")) == [("rejected", code)]


def test_a_client_without_collateral_in_that_currency_is_rejected(now):
    order = validate(ReceivedOrderFactory(), now)
    assert (order.state, order.reject_reason) == ("rejected", "insufficient_collateral")


def test_collateral_exactly_covering_the_order_is_enough(funded, now):
    contract, fund_lock = funded
    order = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract, price=D("1000")), now)
    assert order.state == "accepted"
    fund_lock.refresh_from_db()
    assert fund_lock.available == 0


def test_collateral_already_held_by_orders_is_not_available(funded, now):
    contract, fund_lock = funded
    first = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract, price=D("600")), now)
    second = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract, price=D("600")), now)
    assert (first.state, second.state, second.reject_reason) == ("accepted", "rejected", "insufficient_collateral")
    assert order_value_of(fund_lock) == D("600")


def test_validating_twice_locks_once(funded, now):
    contract, fund_lock = funded
    order = ReceivedOrderFactory(client=fund_lock.client, contract=contract)
    assert order_validate_task.apply(args=[order.pk]).get() == "accepted"
    assert order_validate_task.apply(args=[order.pk]).get() == "accepted"
    assert order_value_of(fund_lock) == D("100")
    assert OrderStateHistory.objects.filter(order=order).count() == 1


def test_cancel_releases_the_order_value_once(funded, now):
    contract, fund_lock = funded
    order = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract), now)

    order_cancel(client=fund_lock.client, order_id=order.pk, now=now)
    order_cancel(client=fund_lock.client, order_id=order.pk, now=now)

    order.refresh_from_db()
    assert (order.state, order.order_value) == ("cancelled", 0)
    assert order_value_of(fund_lock) == 0
    assert list(order.history.values_list("to_state", flat=True)) == ["accepted", "cancelled"]


def test_an_order_cancelled_before_validation_is_never_accepted(funded, now):
    contract, fund_lock = funded
    order = ReceivedOrderFactory(client=fund_lock.client, contract=contract)
    order_cancel(client=fund_lock.client, order_id=order.pk, now=now)
    assert validate(order, now).state == "cancelled"
    assert order_value_of(fund_lock) == 0


def test_finished_orders_cannot_be_cancelled(funded, now):
    contract, fund_lock = funded
    order = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract, price=D("5000")), now)
    assert order.state == "rejected"
    with pytest.raises(ApplicationError) as err:
        order_cancel(client=fund_lock.client, order_id=order.pk, now=now)
    assert (err.value.code, err.value.http_status) == ("order_not_open", 409)


def test_transitions_outside_the_table_are_refused(funded, now):
    contract, fund_lock = funded
    order = ReceivedOrderFactory(client=fund_lock.client, contract=contract)
    with pytest.raises(ValueError, match="received -> filled"):
        order_transition(order=order, new_state="filled", now=now)
    order.refresh_from_db()
    assert order.state == "received" and not order.history.exists()


def test_accepting_and_cancelling_advances_the_book_sequence(funded, now):
    contract, fund_lock = funded
    order = validate(ReceivedOrderFactory(client=fund_lock.client, contract=contract), now)
    order_cancel(client=fund_lock.client, order_id=order.pk, now=now)
    contract.refresh_from_db()
    assert contract.book_sequence == 2
    assert FundLock.objects.get(pk=fund_lock.pk).order_value == 0


def test_orders_left_received_are_requeued_and_validated_once(funded, now, eager_tasks):
    from ccp.orders.tasks import orders_requeue_stale_task

    contract, fund_lock = funded
    stale = ReceivedOrderFactory(client=fund_lock.client, contract=contract,
                                 updated_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
    fresh = ReceivedOrderFactory(client=fund_lock.client, contract=contract, updated_at=datetime.now(UTC))
    with eager_tasks():
        assert orders_requeue_stale_task.apply().get() == 1
        assert orders_requeue_stale_task.apply().get() == 0
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.state, fresh.state) == ("accepted", "received")
    assert order_value_of(fund_lock) == D("100")
