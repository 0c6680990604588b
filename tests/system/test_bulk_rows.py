"""The bulk row helpers of the auction and expiry paths, on the real database."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

import ccp.db
from ccp.db import bulk_insert_rows, bulk_update_rows, bulk_upsert_rows
from ccp.orders.models import Order, OrderStateHistory
from ccp.risk.models import Position
from tests.factories import ClientFactory, ContractFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db
# the other columns of a position
EMPTY = {"cost": D(0), "entry_price": None, "realised_pnl": D(0), "margin_mode": "", "margin": D(0),
         "liquidation_px": None, "call_px": None, "liquidation_key": None, "call_key": None, "margin_called_at": None}


def test_upsert_inserts_new_rows_adds_to_existing_ones_and_replaces_the_rest(now):
    alice, bob = ClientFactory(), ClientFactory()
    call = ContractFactory()
    Position.objects.create(client=alice, contract=call, quantity=D("1.5"), updated_at=now)
    later = now + timedelta(minutes=1)
    bulk_upsert_rows(Position, [
        {"client_id": bob.pk, "contract_id": call.pk, "quantity": D("-2"), **EMPTY, "updated_at": later},
        {"client_id": alice.pk, "contract_id": call.pk, "quantity": D("0.25"), **EMPTY, "updated_at": later},
    ], key=["client_id", "contract_id"], add=["quantity"], replace=["updated_at"])
    rows = {p.client_id: (p.quantity, p.updated_at) for p in Position.objects.all()}
    assert rows == {alice.pk: (D("1.75"), later), bob.pk: (D("-2"), later)}


def test_upsert_replaces_without_adding(now):
    alice, call = ClientFactory(), ContractFactory()
    Position.objects.create(client=alice, contract=call, quantity=D("3"), updated_at=now)
    bulk_upsert_rows(Position, [{"client_id": alice.pk, "contract_id": call.pk, "quantity": D("1"), **EMPTY,
                                 "updated_at": now}],
                     key=["client_id", "contract_id"], replace=["quantity"])
    assert Position.objects.get().quantity == D("1")


def test_insert_and_update_by_primary_key(now):
    alice, bob, call = ClientFactory(), ClientFactory(), ContractFactory()
    bulk_insert_rows(Position, [{"client_id": alice.pk, "contract_id": call.pk, "quantity": D("1"), **EMPTY,
                                 "updated_at": now},
                                Position(client=bob, contract=call, quantity=D("2"), updated_at=now)])
    positions = list(Position.objects.order_by("client_id"))
    positions[0].quantity, positions[1].quantity = D("5"), D("-5")
    bulk_update_rows(Position, positions, ["quantity"])
    assert list(Position.objects.order_by("client_id").values_list("quantity", flat=True)) == [D("5"), D("-5")]


def test_nothing_to_write_runs_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk_upsert_rows(Position, [], key=["client_id", "contract_id"], add=["quantity"])
        bulk_insert_rows(Position, [])
        bulk_update_rows(Position, [], ["quantity"])


def test_update_sends_each_kind_of_value_as_it_is(now):
    # given orders, and new values of each plain kind a few-row update sends as an array literal
    call = ContractFactory()
    orders = [ReceivedOrderFactory(contract=call) for _ in range(3)]
    reasons = ['say "no"', "back\\slash, comma {brace}", "NULL"]
    prices = [D("1E-18"), D("12345678901234567890.123456789012345678"), D("-0.5")]
    priorities = [None, 7, 2**62]
    for order, reason, price, priority in zip(orders, reasons, prices, priorities, strict=True):
        order.reject_reason, order.modify_price, order.book_priority = reason, price, priority
    # when they are written
    bulk_update_rows(Order, orders, ["reject_reason", "modify_price", "book_priority"])
    # then the rows hold exactly them
    assert list(Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("pk").values_list(
        "reject_reason", "modify_price", "book_priority")) == list(zip(reasons, prices, priorities, strict=True))


@pytest.mark.parametrize("few", [100, 0])  # one INSERT from arrays, or COPY
def test_insert_keeps_the_rows_order_and_each_kind_of_value(now, monkeypatch, few):
    # given history rows with each plain kind of value, in an order that is not the orders' ids'
    monkeypatch.setattr(ccp.db, "FEW_INSERTS", few)
    call = ContractFactory()
    orders = [ReceivedOrderFactory(contract=call) for _ in range(3)][::-1]
    rows = [{"order_id": o.pk, "from_state": state, "to_state": "accepted", "reason": reason,
             "filled_quantity": quantity, "at": now + timedelta(microseconds=n)}
            for n, (o, state, reason, quantity) in enumerate(zip(
                orders, [None, "received", "received"], ['say "no"', "back\\slash, comma {brace}", "NULL"],
                [D("1E-18"), D("12345678901234567890.123456789012345678"), D(0)], strict=True))]
    # when they are inserted
    bulk_insert_rows(OrderStateHistory, rows)
    # then the rows hold exactly them, their ids in the given order
    assert list(OrderStateHistory.objects.filter(order_id__in=[o.pk for o in orders]).order_by("id").values(
        "order_id", "from_state", "to_state", "reason", "filled_quantity", "at")) == [
        {**row, "from_state": row["from_state"] or None} for row in rows]
