"""POST /api/v1/orders against the served app with a worker: the answer carries the validation's
result when it comes within CCP_ORDER_WAIT_MS (201 accepted, or rejected with its reason), else the
order as received (202)."""

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import ApiToken
from ccp.accounts.services import token_hash
from ccp.clock import utcnow
from ccp.orders.models import Order
from tests.factories import ContractFactory, FundLockFactory
from tests.processes import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    # long enough for a worker on a busy machine; a test without a worker waits it out
    return {"CCP_ORDER_WAIT_MS": "3000", "CCP_THROTTLE_ORDERS": ""}


@pytest.fixture
def trader():
    contract = ContractFactory()
    fund = FundLockFactory(currency=contract.collateral, fundlock=D("1000"))
    token = f"order-result-{fund.client.pk}-" + "x" * 20
    now = utcnow()
    ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=fund.client, created_at=now,
                            expires_at=now + timedelta(days=1))
    return token, contract


def post_order(served, token: str, body: dict) -> tuple[int, dict]:
    status, _, answer = served.request("POST", "/api/v1/orders", json.dumps(body).encode(),
                                       {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return status, json.loads(answer)


def order_body(contract, client_order_id: str, price: str = "100", quantity: str = "1") -> dict:
    return {"client_order_id": client_order_id, "contract": contract.symbol, "side": "buy", "kind": "limit",
            "price": price, "quantity": quantity}


def test_the_answer_carries_the_validation_result(served, children, trader):
    token, contract = trader
    children.worker("--pool", "solo", "-Q", "orders")
    wait_for(lambda: "ready." in (children.log_dir / "worker.log").read_text(), 60, "the worker")
    # an order within the collateral is answered accepted, with the value it holds
    status, order = post_order(served, token, order_body(contract, "fits"))
    assert (status, order["state"], order["order_value"]) == (201, "accepted", "100")
    # one beyond it is answered rejected, with the reason
    status, order = post_order(served, token, order_body(contract, "too-big", quantity="10"))
    assert (status, order["state"], order["reject_reason"]) == (201, "rejected", "insufficient_collateral")
    # the same order again is the stored one, as before
    status, again = post_order(served, token, order_body(contract, "fits"))
    assert (status, again["state"]) == (200, "accepted")


def test_a_batch_answers_each_orders_result(served, children, trader):
    token, contract = trader
    children.worker("--pool", "solo", "-Q", "orders")
    wait_for(lambda: "ready." in (children.log_dir / "worker.log").read_text(), 60, "the worker")
    orders = [order_body(contract, "fits"), order_body(contract, "nope") | {"contract": "NOPE"},
              order_body(contract, "too-big", quantity="10")]
    status, _, answer = served.request("POST", "/api/v1/orders/batch", json.dumps({"orders": orders}).encode(),
                                       {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    results = json.loads(answer)["results"]
    assert status == 200 and [r["status"] for r in results] == [201, 400, 201]
    assert (results[0]["order"]["state"], results[2]["order"]["state"]) == ("accepted", "rejected")
    assert results[2]["order"]["reject_reason"] == "insufficient_collateral"
    assert results[1]["error"]["code"] == "unknown_contract"


def test_without_a_validation_within_the_wait_the_order_is_received(served, trader):
    token, contract = trader
    # no worker runs: the wait passes
    status, order = post_order(served, token, order_body(contract, "unvalidated"))
    assert (status, order["state"]) == (202, "received")
    assert Order.objects.get(pk=order["id"]).state == "received"
