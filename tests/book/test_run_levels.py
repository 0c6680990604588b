"""A matcher run publishes each level its orders joined or left, and the best bid and offer, as the database has
them once the run commits: read from the contracts' engines (``ccp.book.services._book_levels``), not from the
order rows, which they hold the same."""

from decimal import Decimal as D

import pytest

from ccp.book.services import books_match
from ccp.marketdata.services import bbo_payload
from ccp.orders.models import Order
from ccp.orders.selectors import books_bbo, level_totals
from ccp.orders.states import BOOK_STATES
from tests.book.test_matcher_kill import continuous, scenario
from tests.conftest import NOW
from tests.sends import sends_recorded

pytestmark = pytest.mark.django_db


@pytest.fixture
def book_sent(monkeypatch):
    """The book stream events sent, by contract id, in order (sent as they are, to the real layer too)."""
    by_contract: dict[int, list[dict]] = {}

    def record(messages):
        for group, message in messages:
            if group.startswith("book."):
                events = message["events"] if message["type"] == "stream.events" else [message["event"]]
                by_contract.setdefault(int(group.partition(".")[2]), []).extend(events)

    sends_recorded(monkeypatch, record)
    return by_contract


def test_each_run_publishes_the_levels_and_best_prices_the_database_holds(book_sent,
                                                                           django_capture_on_commit_callbacks):
    # given two continuous contracts with a scenario of resting, crossing, market, stop, post-only, fill-or-kill
    # and self-trade-prevention orders (some with a take-profit and a stop-loss), matched in small runs
    contracts = continuous(0, 7)
    scenario(*contracts)
    runs = checked = 0
    while True:
        for events in book_sent.values():
            events.clear()
        with django_capture_on_commit_callbacks(execute=True):
            taken = books_match(contract_id=contracts[0].pk, now=NOW, limit=5, queues=1)
        if not taken:
            break
        runs += 1
        for contract in contracts:
            events = book_sent.get(contract.pk, [])
            # then each level the run published has the open quantity and order count of the committed book
            totals = {(row["side"], row["price"]): (row["quantity"], row["orders"])
                      for row in level_totals(contract_id=contract.pk)}
            for event in events:
                if event["type"] == "book.level":
                    quantity, orders = totals.get((event["side"], D(event["price"])), (D(0), 0))
                    assert (D(event["quantity"]), event["orders"]) == (quantity, orders), (runs, event)
                    checked += 1
            # and the last best bid and offer it published is the committed book's
            bbos = [event for event in events if event["type"] == "book.bbo"]
            if bbos:
                best = books_bbo(contract_ids=[contract.pk])[contract.pk]
                assert {k: v for k, v in bbos[-1].items() if k not in ("type", "sequence")} == bbo_payload(best), (
                    runs, bbos[-1], best)
    assert runs > 10 and checked > 50
    assert Order.objects.filter(contract__in=contracts, state__in=BOOK_STATES).exists()
