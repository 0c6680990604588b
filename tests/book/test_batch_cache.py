"""The matcher keeps, next to its engine, the orders the engine rests or arms as the last batch committed
them, and reads from the database only the orders it does not hold: what it holds must be what the
database has, field for field, after every batch (a queued modification, which changes its order's row
without bumping the book's version, is read again)."""

import random
from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.book import services
from ccp.book.services import book_match, order_modify
from ccp.book.versions import book_version
from ccp.orders.models import Order
from ccp.system.invariants import invariants_check
from tests.book.test_triggers import scenario
from tests.book.test_venue import continuous_future, send, state, trader, trades
from tests.conftest import NOW
from tests.factories import FundLockFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db

FIELDS = [f.attname for f in Order._meta.concrete_fields]


def match_committed(contract, capture, **kwargs) -> None:
    """``match``, each batch committed as the matcher task commits it (its engine kept only then)."""
    while True:
        with capture(execute=True):
            if not book_match(contract_id=contract.pk, **{"now": NOW, **kwargs}):
                return


def assert_held_orders_are_the_database(contract) -> int:
    """Each order the matcher holds equals its row; returns how many it holds."""
    book = services._BOOKS.get(contract.pk)
    if book is None or book.version != book_version(contract.pk):
        return 0  # stale (a cancel since): the next batch rebuilds and holds nothing yet
    rows = {row["id"]: row for row in Order.objects.filter(pk__in=[o.pk for o in book.orders.values()])
            .values(*FIELDS)}
    for engine_id, order in book.orders.items():
        assert engine_id == services.engine_id(order)
        assert {name: getattr(order, name) for name in FIELDS} == rows[order.pk], engine_id
        assert order.state in ("accepted", "partially_filled", "untriggered")
    return len(book.orders)


@pytest.mark.parametrize("seed", range(1, 5))
def test_the_orders_a_batch_holds_are_the_rows_after_every_batch(seed, django_capture_on_commit_callbacks):
    contract = continuous_future()
    traders = [FundLockFactory(currency=contract.collateral, fundlock=D("3000")).client for _ in range(5)]
    held = 0
    for _ in scenario(contract, random.Random(seed), traders, steps=120):
        match_committed(contract, django_capture_on_commit_callbacks)
        held += assert_held_orders_are_the_database(contract)
    assert held > 20
    assert trades(contract)
    assert_books_balance()
    assert invariants_check().ok


def test_a_modification_waiting_behind_the_batch_is_read_again(django_capture_on_commit_callbacks):
    contract = continuous_future()
    maker, taker = trader(contract), trader(contract)
    resting = send(maker, contract, "sell", "100", "5")
    match_committed(contract, django_capture_on_commit_callbacks)
    assert str(resting.pk) in services._BOOKS[contract.pk].orders
    buy = send(taker, contract, "buy", "100", "1")  # arrives before the modification
    order_modify(client=maker, order_id=resting.pk, price=D("101"), quantity=None, now=NOW + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert book_match(contract_id=contract.pk, now=NOW + timedelta(seconds=2), limit=1) == 1
    assert state(buy)[:2] == ("filled", D("1"))
    resting.refresh_from_db()
    assert resting.modify_requested_at is not None and resting.filled_quantity == D("1")
    assert assert_held_orders_are_the_database(contract) == 1
    match_committed(contract, django_capture_on_commit_callbacks, now=NOW + timedelta(seconds=3))
    resting.refresh_from_db()
    assert (resting.price, resting.modify_requested_at, resting.filled_quantity) == (D("101"), None, D("1"))
    assert assert_held_orders_are_the_database(contract) == 1
    assert invariants_check().ok


def test_a_modification_of_a_leg_on_the_book_is_read_again(django_capture_on_commit_callbacks):
    """A take-profit that fired as a limit order rests under its engine id ``<entry>:tp``: a modification
    waiting for it drops it from what the matcher holds all the same."""
    contract = continuous_future()
    me, maker, other, taker = (trader(contract) for _ in range(4))
    send(maker, contract, "sell", "100", "2")
    entry = send(me, contract, "buy", "100", "2", attached={"tp": {"trigger_price": "105", "price": "106",
                                                                   "kind": "limit", "trigger_source": "last"}})
    send(other, contract, "sell", "105", "1")
    send(maker, contract, "buy", "105", "1")  # the last trade at 105 fires the take-profit: it rests at 106
    match_committed(contract, django_capture_on_commit_callbacks)
    leg = Order.objects.get(parent=entry, leg="tp")
    assert (leg.state, leg.price) == ("accepted", D("106"))
    assert f"{entry.pk}:tp" in services._BOOKS[contract.pk].orders
    buy = send(taker, contract, "buy", "106", "1")  # arrives before the modification
    order_modify(client=me, order_id=leg.pk, price=D("107"), quantity=None, now=NOW + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert book_match(contract_id=contract.pk, now=NOW + timedelta(seconds=2), limit=1) == 1
    assert state(buy)[:2] == ("filled", D("1"))
    assert assert_held_orders_are_the_database(contract) >= 1
    match_committed(contract, django_capture_on_commit_callbacks, now=NOW + timedelta(seconds=3))
    leg.refresh_from_db()
    assert (leg.price, leg.modify_requested_at, leg.filled_quantity) == (D("107"), None, D("1"))
    assert assert_held_orders_are_the_database(contract) >= 1
    assert invariants_check().ok
