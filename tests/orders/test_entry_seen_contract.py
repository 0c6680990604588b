"""A single order is entered against its contract as the process last read it (``order_submit_seen``): one
statement checks that the contract is unchanged (its book sequence aside) and the client under the open-order
cap, and inserts the order; a contract changed since is read again, and the order gets the answer it would
have got from fresh reads."""

from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ccp.contracts.models import Contract, ContractState
from ccp.orders.models import Order

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def throttle_off(settings):
    settings.CCP_THROTTLE_ORDERS = ""


def post(api, contract, client_order_id: str, price: str = "100"):
    return api.post("/api/v1/orders", {"client_order_id": client_order_id, "contract": contract.symbol,
                                       "side": "buy", "kind": "limit", "price": price, "quantity": "1"},
                    format="json")


def entry_reads(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "LEFT JOIN contracts_contract AS c ON c.symbol" in q["sql"]]


def test_an_unchanged_contract_is_not_read_again_even_with_its_book_moved(api_as, trader, contract):
    api = api_as(trader)
    assert post(api, contract, "a").status_code == 202
    Contract.objects.filter(pk=contract.pk).update(book_sequence=41)
    with CaptureQueriesContext(connection) as queries:
        response = post(api, contract, "b")
    assert response.status_code == 202 and response.json()["state"] == "received"
    assert entry_reads(queries) == []
    assert Order.objects.filter(client=trader, client_order_id__in=["a", "b"]).count() == 2


def test_a_contract_halted_since_the_last_order_refuses_the_next(api_as, trader, contract):
    api = api_as(trader)
    assert post(api, contract, "a").status_code == 202
    Contract.objects.filter(pk=contract.pk).update(state=ContractState.HALTED)
    with CaptureQueriesContext(connection) as queries:
        response = post(api, contract, "b")
    assert response.status_code == 400 and response.json()["code"] == "contract_halted"
    assert len(entry_reads(queries)) == 1  # read again
    assert not Order.objects.filter(client=trader, client_order_id="b").exists()
    # and when it lists again, orders go in
    Contract.objects.filter(pk=contract.pk).update(state=ContractState.LISTED)
    assert post(api, contract, "c").status_code == 202


def test_a_tick_size_changed_since_the_last_order_applies_to_the_next(api_as, trader, contract):
    api = api_as(trader)
    assert post(api, contract, "a", price="101").status_code == 202
    Contract.objects.filter(pk=contract.pk).update(tick_size=D(2))
    response = post(api, contract, "b", price="101")
    assert response.status_code == 400 and response.json()["code"] == "price_off_tick"
    assert post(api, contract, "c", price="102").status_code == 202


def test_the_open_order_cap_holds(api_as, trader, contract, settings):
    settings.CCP_MAX_OPEN_ORDERS = 2
    api = api_as(trader)
    assert [post(api, contract, k).status_code for k in ("a", "b")] == [202, 202]
    response = post(api, contract, "c")
    assert response.status_code == 409 and response.json()["code"] == "too_many_open_orders"
    assert post(api, contract, "a").status_code == 200  # a retry at the cap still gets its order


def test_an_order_sent_again_gets_the_stored_one_and_another_under_its_id_is_refused(api_as, trader, contract):
    api = api_as(trader)
    first = post(api, contract, "a")
    assert post(api, contract, "b").status_code == 202  # the contract is known now
    again = post(api, contract, "a")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = post(api, contract, "a", price="99")
    assert other.status_code == 409 and other.json()["code"] == "client_order_id_reused"
    assert other.json()["extra"] == {"order_id": first.json()["id"]}


def test_an_unknown_symbol_after_the_contract_went(api_as, trader, contract):
    api = api_as(trader)
    assert post(api, contract, "a").status_code == 202
    Contract.objects.filter(pk=contract.pk).update(symbol="RENAMED")
    response = post(api, contract, "b")
    assert response.status_code == 400 and response.json()["code"] == "unknown_contract"
