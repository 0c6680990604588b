"""POST /api/v1/orders/batch: up to 100 orders, each with its own result and idempotency key; the
request refused only for its shape; the order entry throttle counts each order."""

import pytest

from ccp.orders.models import Order

pytestmark = pytest.mark.django_db


def order(contract, client_order_id: str, /, **change) -> dict:
    return {"client_order_id": client_order_id, "contract": contract.symbol, "side": "buy", "kind": "limit",
            "price": "100", "quantity": "1", **change}


def post_batch(api, orders):
    return api.post("/api/v1/orders/batch", {"orders": orders}, format="json")


def test_each_order_gets_its_own_result_in_the_order_sent(api_as, trader, contract, eager_tasks):
    api = api_as(trader)
    with eager_tasks():
        response = post_batch(api, [order(contract, "a"), order(contract, "b", contract="NOPE"),
                                    order(contract, "c", price=100), order(contract, "d", price="101")])
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400, 400, 202]
    assert results[1]["error"]["code"] == "unknown_contract" and set(results[1]["error"]) == {"code", "message",
                                                                                             "extra"}
    assert results[2]["error"]["code"] == "invalid_number"
    assert [results[0]["order"]["client_order_id"], results[3]["order"]["client_order_id"]] == ["a", "d"]
    # the stored orders were validated (one task for the batch), in the order sent
    assert dict(Order.objects.values_list("client_order_id", "state")) == {"a": "accepted", "d": "accepted"}


def test_each_order_has_its_own_idempotency_key(api_as, trader, contract):
    api = api_as(trader)
    first = post_batch(api, [order(contract, "a"), order(contract, "b")]).json()["results"]
    again = post_batch(api, [order(contract, "a"), order(contract, "b", price="102"), order(contract, "c")])
    results = again.json()["results"]
    assert [r["status"] for r in results] == [200, 409, 202]
    assert results[0]["order"]["id"] == first[0]["order"]["id"]
    assert results[1]["error"]["code"] == "client_order_id_reused"
    assert Order.objects.count() == 3


@pytest.mark.parametrize(("body", "code"), [
    ({"orders": []}, "invalid_input"),
    ({"orders": "x"}, "invalid_input"),
    ({"orders": [1]}, "invalid_input"),
    ({"nothing": []}, "invalid_input"),
    ([{"orders": []}], "invalid_input"),
])
def test_a_request_that_is_not_a_batch_is_refused_whole(api_as, trader, body, code):
    response = api_as(trader).post("/api/v1/orders/batch", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code
    assert not Order.objects.exists()


def test_more_than_100_orders_are_refused_whole(api_as, trader, contract, settings):
    settings.CCP_THROTTLE_ORDERS = ""  # the default (50/s) would refuse half of a full batch
    response = post_batch(api_as(trader), [order(contract, f"o-{i}") for i in range(101)])
    assert response.status_code == 400
    assert response.json() == {"code": "batch_too_large", "message": "A batch holds at most 100 orders.",
                               "extra": {"max_orders": 100}}
    assert not Order.objects.exists()
    assert post_batch(api_as(trader), [order(contract, f"o-{i}") for i in range(100)]).status_code == 200
    assert Order.objects.count() == 100


def test_the_throttle_counts_each_order(api_as, trader, contract, settings):
    settings.CCP_THROTTLE_ORDERS = "5/min"
    api = api_as(trader)
    results = post_batch(api, [order(contract, f"o-{i}") for i in range(8)]).json()["results"]
    assert [r["status"] for r in results] == [202] * 5 + [429] * 3
    assert results[5]["error"]["code"] == "throttled" and 1 <= results[5]["error"]["extra"]["retry_after_s"] <= 60
    assert Order.objects.count() == 5
    # and a single order after the batch is over the same rate
    single = api.post("/api/v1/orders", order(contract, "single"), format="json")
    assert single.status_code == 429
