"""Order entry over REST: submit, idempotency, isolation between traders, and bad input."""

from datetime import timedelta, timezone

import pytest

from ccp.accounts.models import FundLock
from ccp.orders.models import Order, OrderStateHistory
from tests.factories import EXPIRY, ClientFactory, ContractFactory, FundLockFactory

pytestmark = pytest.mark.django_db


def order_body(contract, /, **change) -> dict:
    return {"client_order_id": "c-1", "contract": contract.symbol, "side": "buy", "kind": "limit",
            "price": "100", "quantity": "1", **change}


def test_an_order_is_received_then_validated_and_shows_its_history(api_as, trader, contract, eager_tasks):
    api = api_as(trader)
    with eager_tasks():
        response = api.post("/api/v1/orders", order_body(contract), format="json")
    assert response.status_code == 202
    assert response.json()["state"] == "received"
    detail = api.get(f"/api/v1/orders/{response.json()['id']}").json()
    assert detail["state"] == "accepted" and detail["order_value"] == "100" and detail["price"] == "100"
    assert [h["to_state"] for h in detail["history"]] == ["received", "accepted"]
    balance = api.get("/api/v1/balances").json()
    assert balance == [{"currency": "USDC", "fundlock": "1000", "settle_value": "0", "order_value": "100",
                        "lockups": "0", "margin": "0", "available": "900", "updated_at": balance[0]["updated_at"]}]


def test_the_same_client_order_id_returns_the_original(api_as, trader, contract):
    api = api_as(trader)
    first = api.post("/api/v1/orders", order_body(contract), format="json")
    again = api.post("/api/v1/orders", order_body(contract, price="100.0"), format="json")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    different = api.post("/api/v1/orders", order_body(contract, price="101"), format="json")
    assert different.status_code == 409 and different.json()["code"] == "client_order_id_reused"
    assert Order.objects.count() == 1
    # a retry after the contract halted still gets the original, a new order the rule's code
    contract.state = "halted"
    contract.save(update_fields=["state"])
    retry = api.post("/api/v1/orders", order_body(contract), format="json")
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])
    fresh = api.post("/api/v1/orders", order_body(contract, client_order_id="new-one"), format="json")
    assert (fresh.status_code, fresh.json()["code"]) == (400, "contract_halted")
    assert Order.objects.count() == 1


def test_client_order_ids_are_per_client(api_as, trader, contract):
    other = FundLockFactory(currency=contract.collateral).client
    assert api_as(trader).post("/api/v1/orders", order_body(contract), format="json").status_code == 202
    assert api_as(other).post("/api/v1/orders", order_body(contract), format="json").status_code == 202


def test_a_trader_cannot_see_or_cancel_another_traders_order(api_as, trader, contract, eager_tasks):
    with eager_tasks():
        order_id = api_as(trader).post("/api/v1/orders", order_body(contract), format="json").json()["id"]
    intruder = api_as(ClientFactory())
    for response in (intruder.get(f"/api/v1/orders/{order_id}"), intruder.post(f"/api/v1/orders/{order_id}/cancel")):
        assert response.status_code == 404 and response.json()["code"] == "order_not_found"
    assert intruder.get("/api/v1/orders").json()["results"] == []
    assert intruder.get("/api/v1/balances").json() == []
    assert Order.objects.get(pk=order_id).state == "accepted"


def test_cancel_over_the_api_releases_collateral(api_as, trader, contract, eager_tasks):
    api = api_as(trader)
    with eager_tasks():
        order_id = api.post("/api/v1/orders", order_body(contract), format="json").json()["id"]
    with eager_tasks():
        response = api.post(f"/api/v1/orders/{order_id}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert api.get("/api/v1/balances").json()[0]["available"] == "1000"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"price": 100}, 400, "invalid_number"),  # a JSON number: money travels as strings
        ({"quantity": "abc"}, 400, "invalid_number"),
        ({"quantity": "-1"}, 400, "invalid_number"),
        ({"quantity": "0"}, 400, "quantity_not_positive"),
        ({"quantity": "0.015"}, 400, "quantity_off_lot"),
        ({"price": "100.5"}, 400, "price_off_tick"),
        ({"price": "60000"}, 400, "price_out_of_bounds"),
        ({"contract": "NOPE-C"}, 400, "unknown_contract"),
        ({"price": "1" + "0" * 30}, 400, "invalid_number"),
        ({"quantity": "1e30"}, 400, "invalid_number"),
        ({"price": "0." + "0" * 18 + "1"}, 400, "invalid_number"),
        ({"price": "NaN"}, 400, "invalid_number"),
        ({"price": "Infinity"}, 400, "invalid_number"),
        ({"side": "hold"}, 400, "invalid_input"),
        ({"kind": "market"}, 400, "order_type_not_in_auction"),
        ({"kind": "stop"}, 400, "invalid_input"),
        ({"time_in_force": "day"}, 400, "invalid_input"),
        ({"time_in_force": "ioc"}, 400, "order_type_not_in_auction"),
        ({"reduce_only": True}, 400, "order_type_not_in_auction"),
        ({"client_order_id": ""}, 400, "invalid_input"),
        ({"client_order_id": "x" * 65}, 400, "invalid_input"),
        ({"client_order_id": "has space"}, 400, "invalid_input"),
        ({"contract": ["list"]}, 400, "invalid_input"),
    ],
)
def test_bad_orders_get_a_clear_4xx_and_change_nothing(api_as, trader, contract, body, status, code):
    before = FundLock.objects.get(client=trader).order_value
    response = api_as(trader).post("/api/v1/orders", order_body(contract, **body), format="json")
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code and response.json()["message"]
    assert not Order.objects.exists() and not OrderStateHistory.objects.exists()
    assert FundLock.objects.get(client=trader).order_value == before


@pytest.mark.parametrize("raw", ["{not json", "[]", "null", '"a string"', "1"])
def test_malformed_or_non_object_json_is_refused(api_as, trader, raw):
    response = api_as(trader).post("/api/v1/orders", data=raw, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] in {"malformed_request", "invalid_input"}
    assert not Order.objects.exists()


def test_order_entry_needs_a_token(contract):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/orders", order_body(contract), format="json")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert not Order.objects.exists()


def test_contracts_are_listed_and_filtered_publicly():
    from rest_framework.test import APIClient

    call = ContractFactory()
    ContractFactory(kind="put", pair=call.pair)
    api = APIClient()
    everything = api.get("/api/v1/contracts").json()
    assert everything["count"] == 2
    calls = api.get("/api/v1/contracts", {"underlying": "BTC/USDC", "kind": "call",
                                          "expiry": EXPIRY.isoformat()}).json()
    assert [c["symbol"] for c in calls["results"]] == [call.symbol]
    assert calls["results"][0]["strike_px"] == "100000" and calls["results"][0]["trading_ends_at"] == \
        f"{EXPIRY.isoformat()}T00:00:00Z"
    assert api.get("/api/v1/contracts", {"underlying": "ETH"}).json()["count"] == 0
    assert api.get("/api/v1/contracts", {"kind": "swap"}).json()["code"] == "invalid_input"
    assert api.get(f"/api/v1/contracts/{call.symbol}").json()["symbol"] == call.symbol
    assert api.get("/api/v1/contracts/NOPE").status_code == 404


def test_the_public_book_aggregates_open_orders_by_price(api_as, trader, contract, eager_tasks):
    api = api_as(trader)
    with eager_tasks():
        for n, price in enumerate(["100", "100", "90"]):
            api.post("/api/v1/orders", order_body(contract, client_order_id=f"b{n}", price=price), format="json")
    book = api.get(f"/api/v1/contracts/{contract.symbol}/book").json()
    assert book["bids"] == [{"price": "100", "quantity": "2", "orders": 2}, {"price": "90", "quantity": "1",
                                                                               "orders": 1}]
    assert book["asks"] == [] and book["sequence"] == 3


def test_the_stream_payload_of_an_order_equals_its_api_representation(trader, contract, now):
    from ccp.orders.serializers import OrderSerializer, order_payload
    from tests.factories import ReceivedOrderFactory

    order = ReceivedOrderFactory(client=trader, contract=contract, cancel_requested_at=now)
    assert order_payload(order) == OrderSerializer(order).data
    # Another zone and microseconds: both come out as DRF writes them (UTC, "Z").
    order.updated_at = now.astimezone(timezone(timedelta(hours=5))).replace(microsecond=120)
    assert order_payload(order) == OrderSerializer(order).data
    assert order_payload(order)["updated_at"].endswith(".000120Z")
