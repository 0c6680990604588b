"""GET /contracts/<symbol>/trades?after_sequence=N: a trade stream client's re-sync after a gap, oldest
first from N + 1, paged by passing next_cursor as the next after_sequence."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import NOW
from tests.factories import ContractFactory
from tests.marketdata.conftest import book

pytestmark = pytest.mark.django_db


@pytest.fixture
def contract():
    contract = ContractFactory()
    book(contract, [("100", "1"), ("101", "1"), ("102", "1")], at=NOW, ref="auction-1")
    book(contract, [("103", "1"), ("104", "1")], at=NOW, ref="auction-2")
    return contract


def page(symbol: str, **query) -> dict:
    response = APIClient().get(f"/api/v1/contracts/{symbol}/trades", query)
    assert response.status_code == 200, response.json()
    return response.json()


def test_after_a_gap_the_missing_trades_come_oldest_first_page_by_page(contract):
    # a client that last saw sequence 1 pages from there two at a time
    seen, after = [], "1"
    while after is not None:
        body = page(contract.symbol, after_sequence=after, limit=2)
        seen += [(t["sequence"], t["price"]) for t in body["results"]]
        after = body["next_cursor"]
    assert seen == [(2, "101"), (3, "102"), (4, "103"), (5, "104")]
    assert page(contract.symbol, after_sequence=5)["results"] == []
    assert [t["sequence"] for t in page(contract.symbol, after_sequence=0)["results"]] == [1, 2, 3, 4, 5]
    # without after_sequence the listing stays newest first
    assert [t["sequence"] for t in page(contract.symbol)["results"]] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("query", [
    {"after_sequence": "-1"}, {"after_sequence": "x"}, {"after_sequence": ""},
    {"after_sequence": "1", "cursor": "3"}, {"after_sequence": str(2**63)},
])
def test_a_bad_after_sequence_is_refused(contract, query):
    response = APIClient().get(f"/api/v1/contracts/{contract.symbol}/trades", query)
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
