"""``trades_book`` finds what is new in one statement (the executions not booked yet under their venue event,
each contract's last sequence, an id per new trade) and books the same rows as before: the new executions in
the given order, each contract numbered on from its own last trade, ids rising in that order, the executions
already booked under the same venue and venue ref left out (and only those: another event's or venue's trade
of the same two orders is not a duplicate)."""

from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution, trades_book
from ccp.contracts.models import Contract
from ccp.locks import contracts_lock
from tests.conftest import NOW
from tests.factories import ContractFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


def book(executions, *, venue=Venue.BOOK, venue_ref="batch-1"):
    with transaction.atomic():
        contracts_lock(Contract.objects.filter(pk__in={e.contract_id for e in executions}))
        with CaptureQueriesContext(connection) as queries:
            rows = trades_book(venue=venue, venue_ref=venue_ref, executions=executions, now=NOW)
    return rows, [q["sql"] for q in queries.captured_queries]


def trade(contract, price="100", quantity="1"):
    buy, sell = ReceivedOrderFactory(contract=contract), ReceivedOrderFactory(contract=contract, side="sell")
    return Execution(contract.pk, D(price), D(quantity), buy.pk, buy.client_id, sell.pk, sell.client_id, "buy")


def stored():
    return list(Trade.objects.order_by("id").values_list("venue", "venue_ref", "contract_id", "sequence",
                                                         "buy_order_id", "sell_order_id", "price", "quantity"))


def test_new_executions_are_numbered_per_contract_in_the_given_order_and_the_booked_ones_left_out():
    one, two = ContractFactory(), ContractFactory(strike_px=D("90000"))
    a, b, c, d, e = trade(one, "101"), trade(two, "102"), trade(one, "103"), trade(two, "104"), trade(one, "105")
    first, _ = book([a, b], venue_ref="batch-0")
    assert [(r["contract_id"], r["sequence"]) for r in first] == [(one.pk, 1), (two.pk, 1)]
    # The same two orders under another event or venue are new trades.
    other_event, _ = book([a], venue_ref="batch-9")
    other_venue, _ = book([a], venue=Venue.AUCTION, venue_ref="batch-0")
    assert [r["sequence"] for r in other_event + other_venue] == [2, 3]

    rows, sql = book([c, a, d, b, e], venue_ref="batch-0")  # a and b are booked under batch-0 already
    assert [(r["contract_id"], r["sequence"], r["price"]) for r in rows] == [
        (one.pk, 4, D("103")), (two.pk, 2, D("104")), (one.pk, 5, D("105"))]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 3 and min(ids) > max(r["id"] for r in first + other_event)
    assert all(r["venue"] == Venue.BOOK and r["venue_ref"] == "batch-0" and r["executed_at"] == NOW for r in rows)
    # One statement before the insert: the duplicate check, the sequences and the ids.
    assert "clearing_trade" in sql[0] and "nextval" in sql[0]
    # then the insert, one statement (a few rows: an INSERT from one array per column; more: a COPY, not captured)
    assert [s.partition(" (")[0] for s in sql[1:] if "clearing_trade" in s] == ['INSERT INTO "clearing_trade"']
    assert stored()[-3:] == [(Venue.BOOK, "batch-0", r["contract_id"], r["sequence"], r["buy_order_id"],
                              r["sell_order_id"], r["price"], r["quantity"]) for r in rows]

    before = stored()
    again, sql = book([c, a, d, b, e], venue_ref="batch-0")
    assert again == [] and stored() == before and len(sql) == 1
    assert book([], venue_ref="batch-0") == ([], [])
