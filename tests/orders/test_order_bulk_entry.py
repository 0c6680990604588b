"""Order entry in bulk (``orders_submit``): a batch is entered in a few statements whatever its size, with the
single order's answers: the same id again gives the stored order, another body under it client_order_id_reused,
the open-order cap refuses what goes beyond it, a revoked token nothing."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from ccp.accounts.models import ApiToken
from ccp.orders.models import Order, OrderStateHistory
from tests.factories import ContractFactory, FundLockFactory


def order(contract, client_order_id: str, /, **change) -> dict:
    return {"client_order_id": client_order_id, "contract": contract.symbol, "side": "buy", "kind": "limit",
            "price": "100", "quantity": "1", **change}


def post_batch(api, orders):
    return api.post("/api/v1/orders/batch", {"orders": orders}, format="json")


def statuses(response) -> list:
    return [r["status"] if r["status"] < 400 else (r["status"], r["error"]["code"]) for r in response.json()["results"]]


@pytest.mark.django_db
def test_a_batch_of_100_orders_takes_as_many_statements_as_a_batch_of_one(api_as, trader, contract, settings):
    settings.CCP_THROTTLE_ORDERS = ""
    other = ContractFactory(pair=contract.pair, kind="put")
    api = api_as(trader)
    assert api.get("/api/v1/orders").status_code == 200  # its token read: both batches find it cached
    with CaptureQueriesContext(connection) as one:
        assert statuses(post_batch(api, [order(contract, "one")])) == [202]
    with CaptureQueriesContext(connection) as hundred:
        response = post_batch(api, [order(contract if i % 2 else other, f"o-{i}") for i in range(100)])
    assert statuses(response) == [202] * 100
    assert len(hundred) == len(one) <= 8
    assert Order.objects.filter(state="received").count() == 101
    assert OrderStateHistory.objects.filter(to_state="received", from_state=None).count() == 101
    # the private stream numbered each order once, in the order sent
    trader.refresh_from_db()
    assert trader.stream_sequence == 101


@pytest.mark.django_db
def test_a_batch_sent_again_with_old_new_and_reused_ids_gets_each_answer(api_as, trader, contract):
    api = api_as(trader)
    first = post_batch(api, [order(contract, "a"), order(contract, "b"), order(contract, "c", price="xx")])
    assert statuses(first) == [202, 202, (400, "invalid_number")]
    stored = {r["order"]["client_order_id"]: r["order"] for r in first.json()["results"] if "order" in r}

    again = post_batch(api, [order(contract, "b"), order(contract, "new"), order(contract, "a", price="101"),
                             order(contract, "c"), order(contract, "new"), order(contract, "dup"),
                             order(contract, "dup", side="sell")])
    assert statuses(again) == [200, 202, (409, "client_order_id_reused"), 202, 200, 202,
                               (409, "client_order_id_reused")]
    results = again.json()["results"]
    assert results[0]["order"] == stored["b"]
    assert results[2]["error"]["extra"] == {"order_id": stored["a"]["id"]}
    assert results[4]["order"]["id"] == results[1]["order"]["id"]  # the same id twice in a batch: one order
    assert results[6]["error"]["extra"] == {"order_id": results[5]["order"]["id"]}
    assert sorted(Order.objects.values_list("client_order_id", flat=True)) == ["a", "b", "c", "dup", "new"]
    assert OrderStateHistory.objects.count() == 5
    # a single order sent again gets the order the batch stored
    single = api.post("/api/v1/orders", order(contract, "new"), format="json")
    assert (single.status_code, single.json()["id"]) == (200, results[1]["order"]["id"])


@pytest.mark.django_db
def test_a_batch_stops_at_the_open_order_cap_and_a_retry_still_gets_its_order(api_as, trader, contract, settings):
    settings.CCP_MAX_OPEN_ORDERS = 3
    api = api_as(trader)
    assert statuses(post_batch(api, [order(contract, "a"), order(contract, "b")])) == [202, 202]

    response = post_batch(api, [order(contract, "a"), order(contract, "x"), order(contract, "y"),
                                order(contract, "b", price="101")])
    assert statuses(response) == [200, 202, (409, "too_many_open_orders"), (409, "too_many_open_orders")]
    assert response.json()["results"][2]["error"]["extra"] == {"limit": 3}
    assert sorted(Order.objects.values_list("client_order_id", flat=True)) == ["a", "b", "x"]
    # at the cap, a retry of a stored order still gets it, and a rule it breaks is still said first
    again = post_batch(api, [order(contract, "x"), order(contract, "z", price="100.5")])
    assert statuses(again) == [200, (400, "price_off_tick")]


@pytest.mark.django_db
def test_a_revoked_token_enters_nothing(api_as, trader, contract):
    api = api_as(trader)
    ApiToken.objects.filter(client=trader).update(revoked_at=ApiToken.objects.get(client=trader).created_at)
    for response in (post_batch(api, [order(contract, "a")]), api.post("/api/v1/orders", order(contract, "b"),
                                                                       format="json")):
        assert (response.status_code, response.json()["code"]) == (401, "token_invalid")
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_ids_store_each_order_once(api_as, settings):
    settings.CCP_THROTTLE_ORDERS = ""
    contract = ContractFactory()
    trader = FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client
    api_as(trader)  # the token, before the threads start
    ids = [f"o-{i}" for i in range(20)]

    def send(reverse: bool) -> list:
        try:
            return statuses(post_batch(api_as(trader), [order(contract, i) for i in (ids[::-1] if reverse else ids)]))
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(send, [False, True, False, True]))

    assert all(set(a) <= {200, 202} for a in answers), answers
    assert sum(a.count(202) for a in answers) == 20  # each id created by exactly one batch
    assert Order.objects.count() == 20 and OrderStateHistory.objects.count() == 20
