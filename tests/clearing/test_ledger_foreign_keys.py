"""The append-only rows a booking writes by the ten thousand carry no database foreign key checks:
PostgreSQL runs one per row and key at commit, which made up a third of an auction's commit
(bench/auction.py). Their writers take the ids from rows they hold locked; the referenced rows are
never deleted. The columns keep their indexes (a client's statement, an order's history)."""

import pytest
from django.db import connection

from ccp.clearing.models import Trade
from ccp.orders.models import OrderStateHistory
from ccp.settlement.models import CashMovement

pytestmark = pytest.mark.django_db


def _foreign_keys(model) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT a.attname FROM pg_constraint AS c JOIN pg_attribute AS a "
                       "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
                       "WHERE c.contype = 'f' AND c.conrelid = %s::regclass", [model._meta.db_table])
        return {row[0] for row in cursor.fetchall()}


def _indexed(model) -> set[str]:
    with connection.cursor() as cursor:
        return {column for index in connection.introspection.get_constraints(cursor, model._meta.db_table).values()
                if index["index"] for column in index["columns"][:1]}


@pytest.mark.parametrize("model", [Trade, OrderStateHistory, CashMovement], ids=lambda m: m.__name__)
def test_booked_rows_have_no_database_foreign_key_checks(model):
    assert _foreign_keys(model) == set()


def test_their_lookup_columns_stay_indexed():
    assert {"order_id"} <= _indexed(OrderStateHistory)
    assert {"client_id", "contract_id"} <= _indexed(CashMovement)
