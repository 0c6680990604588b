"""The bulk row helpers' two paths (one statement over arrays for a few rows, a temporary table for many)
write the same rows: numbers, nulls (a whole column of them too), times, text and booleans."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp import db
from ccp.db import bulk_update_rows, bulk_upsert_rows
from ccp.orders.models import Order
from ccp.risk.models import Position
from tests.factories import ClientFactory, ContractFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

ORDER_FIELDS = ["state", "reject_reason", "quantity", "filled_quantity", "average_fill_price", "last_fill_at",
                "reduce_only", "book_priority", "updated_at"]


def _write(now):
    """Three orders and two positions changed through the helpers; returns what the database then has."""
    alice, bob, call = ClientFactory(), ClientFactory(), ContractFactory()
    orders = [ReceivedOrderFactory(contract=call) for _ in range(3)]
    later = now + timedelta(minutes=1)
    for n, order in enumerate(orders):
        order.state, order.reject_reason, order.quantity = "cancelled", f"reason {n}", D("1.25") * (n + 1)
        order.filled_quantity, order.average_fill_price, order.last_fill_at = (
            (D("1"), D("100.5"), later) if n else (D(0), None, None))
        order.reduce_only, order.book_priority, order.updated_at = n == 1, None, later
    bulk_update_rows(Order, orders, ORDER_FIELDS)
    Position.objects.create(client=alice, contract=call, quantity=D("1.5"), updated_at=now)
    bulk_upsert_rows(Position, [
        {"client_id": client.pk, "contract_id": call.pk, "quantity": D(q), "cost": D(0), "entry_price": None,
         "realised_pnl": D("-0.000000000000000001"), "margin_mode": "", "margin": D(0),
         "liquidation_px": None, "call_px": None, "liquidation_key": None, "call_key": None,
         "margin_called_at": None, "updated_at": later}
        for client, q in ((bob, "-2"), (alice, "0.25"))], key=["client_id", "contract_id"], add=["quantity"],
        replace=["realised_pnl", "entry_price", "updated_at"])
    return ([tuple(getattr(o, f) for f in ORDER_FIELDS) for o in Order.objects.order_by("id")],
            sorted((p.quantity, p.entry_price, p.realised_pnl, p.updated_at) for p in Position.objects.all()))


@pytest.mark.parametrize("few_rows", [0, 1000])
def test_both_paths_write_the_same_rows(now, monkeypatch, few_rows):
    monkeypatch.setattr(db, "FEW_ROWS", few_rows)
    later = now + timedelta(minutes=1)
    orders, positions = _write(now)
    assert orders == [("cancelled", "reason 0", D("1.25"), D(0), None, None, False, None, later),
                      ("cancelled", "reason 1", D("2.5"), D(1), D("100.5"), later, True, None, later),
                      ("cancelled", "reason 2", D("3.75"), D(1), D("100.5"), later, False, None, later)]
    assert positions == [(D("-2"), None, D("-0.000000000000000001"), later),
                         (D("1.75"), None, D("-0.000000000000000001"), later)]


def test_a_few_rows_take_one_statement(now, django_assert_num_queries):
    call = ContractFactory()
    orders = [ReceivedOrderFactory(contract=call) for _ in range(3)]
    with django_assert_num_queries(1):
        bulk_update_rows(Order, orders, ["state", "updated_at"])
