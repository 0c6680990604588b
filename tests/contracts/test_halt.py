"""The halt at 00:00 UTC cancels a contract's open orders in bulk: a few statements whatever their
number, each order's history, value released, book levels and private events after commit."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import ccp.db
from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract
from ccp.contracts.services import contracts_halt
from ccp.matching.services import auction_close, auction_open
from ccp.matching.tasks import auction_settings
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.services import order_validate
from ccp.orders.states import BOOK_STATES
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db

EXPIRY = datetime(2026, 12, 1, tzinfo=UTC).date()
BEFORE = datetime(2026, 11, 30, 23, tzinfo=UTC)
MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    """What the streams send over the channel layer after commit, in order."""
    messages: list[tuple[str, dict]] = []
    monkeypatch.setattr("ccp.streams._send", messages.extend)
    return messages


def book(contract, clients: int, per_client: int, received: int):
    """``clients`` traders with ``per_client`` accepted bids each at ten price levels, and ``received``
    orders not validated yet."""
    orders = []
    for n in range(clients):
        client = FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client
        for k in range(per_client):
            order = ReceivedOrderFactory(client=client, contract=contract, price=D(100 + (n + k) % 10))
            order_validate(order_id=order.pk, now=BEFORE)
            orders.append(order)
    waiting = [ReceivedOrderFactory(contract=contract) for _ in range(received)]
    return orders, waiting


def halt_statements(contract, clients: int, per_client: int, monkeypatch) -> int:
    """The statements the halt sends, its COPYs (``ccp.db``: more than a few rows; not captured) counted."""
    book(contract, clients, per_client, received=5)
    copies = []
    copy = ccp.db._copy
    monkeypatch.setattr(ccp.db, "_copy", lambda *args: copies.append(args[1]) or copy(*args))
    with CaptureQueriesContext(connection) as queries:
        contracts_halt(now=MIDNIGHT)
    return len(queries.captured_queries) + len(copies)


def test_the_halt_cancels_hundreds_of_orders_with_a_few_statements(sent, django_capture_on_commit_callbacks):
    contract = ContractFactory(expiry_date=EXPIRY)
    orders, waiting = book(contract, clients=100, per_client=3, received=20)
    sequence = Contract.objects.get(pk=contract.pk).book_sequence
    sent.clear()

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        halted = contracts_halt(now=MIDNIGHT)

    assert [c.pk for c in halted] == [contract.pk]
    assert len(queries.captured_queries) <= 20
    assert set(Order.objects.filter(contract=contract).values_list("state", "order_value")) == {("cancelled", 0)}
    history = OrderStateHistory.objects.filter(order__contract=contract, to_state="cancelled")
    assert Counter(history.values_list("reason", "from_state")) == {("contract_halted", "accepted"): 300,
                                                                    ("contract_halted", "received"): 20}
    assert not FundLock.objects.exclude(order_value=0).exists()
    # ten price levels emptied: ten book sequence numbers, one level event each
    assert Contract.objects.get(pk=contract.pk).book_sequence == sequence + 10
    events = [(group, message["event"]) for group, message in sent]
    book_events = [e for group, e in events if group == f"book.{contract.pk}"]
    levels = book_events[:-1]
    assert [e["sequence"] for e in levels] == list(range(sequence + 1, sequence + 11))
    assert {(e["type"], e["quantity"], e["orders"]) for e in levels} == {("book.level", "0", 0)}
    # and then one best bid and offer: both sides empty, at the last change's sequence
    assert book_events[-1] == {"type": "book.bbo", "sequence": sequence + 10, "bid": None, "bid_quantity": None,
                               "ask": None, "ask_quantity": None}
    order_events = [e["order"] for _, e in events if e["type"] == "order"]
    assert Counter(o["state"] for o in order_events) == {"cancelled": 320}
    assert sorted(o["id"] for o in order_events) == sorted(o.pk for o in orders + waiting)
    assert Counter(e["type"] for _, e in events if e["type"] == "balance") == {"balance": 100}
    assert_books_balance()

    # again: nothing more
    with django_capture_on_commit_callbacks(execute=True):
        assert contracts_halt(now=MIDNIGHT + timedelta(minutes=1)) == []
    assert OrderStateHistory.objects.filter(order__contract=contract, to_state="cancelled").count() == 320


def test_the_halt_costs_the_same_statements_for_ten_orders_or_three_hundred(monkeypatch):
    few = halt_statements(ContractFactory(expiry_date=EXPIRY), clients=5, per_client=2, monkeypatch=monkeypatch)
    many = halt_statements(ContractFactory(expiry_date=EXPIRY, strike_px=D("110000")), clients=100, per_client=3,
                           monkeypatch=monkeypatch)
    assert few == many


def test_orders_a_running_auction_holds_are_left_to_it(sent, django_capture_on_commit_callbacks):
    contract = ContractFactory(expiry_date=EXPIRY)
    orders, _ = book(contract, clients=4, per_client=2, received=0)
    auction = auction_open(pair=contract.pair, now=BEFORE, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=BEFORE, settings=auction_settings())
    late = ReceivedOrderFactory(client=orders[0].client, contract=contract)
    order_validate(order_id=late.pk, now=BEFORE)

    with django_capture_on_commit_callbacks(execute=True):
        contracts_halt(now=MIDNIGHT)

    held = Order.objects.filter(pk__in=[o.pk for o in orders])
    assert {(o.state, o.cancel_requested_at) for o in held} == {("accepted", MIDNIGHT)}
    assert sum(FundLock.objects.values_list("order_value", flat=True)) == sum(o.order_value for o in held)
    assert Order.objects.get(pk=late.pk).state == "cancelled"
    assert Order.objects.filter(contract=contract, state__in=BOOK_STATES).count() == len(orders)
    assert_books_balance()
