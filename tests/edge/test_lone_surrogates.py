"""A lone UTF-16 surrogate escape ("\\ud800") in a JSON body is JSON but not text: refused whole as
``malformed_request``, changing nothing. It was parsed, and a field whose refusal names its input (a choice:
``"\\ud800" is not a valid choice``) then crashed the rendering of the answer: a 500."""

import json

import pytest

from ccp.orders.models import Order
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

LONE = "\ud800"


@pytest.fixture
def trader():
    contract = ContractFactory()
    return FundLockFactory(currency=contract.collateral).client, contract


def post(api, path: str, body: dict):
    # json.dumps escapes the surrogate as \ud800 (ASCII), as a hostile client would send it
    return api.post(path, data=json.dumps(body), content_type="application/json")


def order(contract, **fields) -> dict:
    return {"client_order_id": "o-1", "contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1",
            **fields}


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/orders", lambda c: order(c, side=LONE)),
    ("/api/v1/orders", lambda c: order(c, time_in_force=LONE)),
    ("/api/v1/orders", lambda c: order(c, take_profit={"trigger_price": "1", "price": "1", "kind": LONE})),
    ("/api/v1/orders/batch", lambda c: {"orders": [order(c, side=LONE)]}),
    ("/api/v1/orders/cancel-all", lambda c: {"side": LONE}),
    ("/api/v1/positions", lambda c: {"contract": c.symbol, "side": LONE, "margin": "10", "leverage": "2"}),
    ("/api/v1/positions/estimate", lambda c: {"contract": c.symbol, "side": LONE, "margin": "10", "leverage": "2"}),
    ("/api/v1/positions/tpsl", lambda c: {"contract": c.symbol, "trigger_source": LONE}),
    ("/api/v1/orders", lambda c: {**order(c), LONE: "x"}),  # in a key
])
def test_a_lone_surrogate_anywhere_is_malformed_and_changes_nothing(api_as, trader, path, body):
    client, contract = trader
    ReceivedOrderFactory(client=client, contract=contract, state="accepted")
    response = post(api_as(client), path, body(contract))
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"
    assert list(Order.objects.values_list("state", flat=True)) == ["accepted"]


def test_a_surrogate_pair_is_text_and_read_as_such(api_as, trader):
    client, contract = trader
    response = post(api_as(client), "/api/v1/orders", order(contract, side="\U0001F600"))  # sent as \ud83d\ude00
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert response.json()["extra"]["fields"]["side"] == ['"\U0001F600" is not a valid choice.']
    assert not Order.objects.exists()
