"""``trades_publish`` reads its contracts' symbols with one plain statement: a queryset's compiling cost the
matcher more than the query, once per batch that traded (the events themselves: test_trade_stream.py)."""

from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ccp.marketdata.services import trades_publish
from tests.conftest import NOW
from tests.factories import ContractFactory

pytestmark = pytest.mark.django_db


def test_the_symbols_of_a_bookings_trades_are_read_in_one_plain_statement():
    one, two = ContractFactory(), ContractFactory(kind="put")
    trades = [{"contract_id": contract.pk, "sequence": n, "id": n, "price": D("100"), "quantity": D("1"),
               "aggressor_side": "buy", "executed_at": NOW, "venue": "book", "venue_ref": "b-1"}
              for n, contract in enumerate([one, two, one], start=1)]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        trades_publish(trades=trades)
    (statement,) = [q["sql"] for q in queries.captured_queries]
    assert statement.startswith("SELECT id, symbol FROM contracts_contract WHERE id = ANY(")
