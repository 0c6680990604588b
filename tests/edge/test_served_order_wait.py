"""The served process (``python -m ccp.server``, one worker) while an order waits for its result: the wait
holds that request only, not the process. Each request's sync code runs on one of the process's
threads (``ccp.server.RequestThreads``); with one thread for all, a request waiting for its order's
result (here no matcher runs, so it waits the whole CCP_ORDER_WAIT_MS) stopped every other request."""

import json
import threading
from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import ApiToken
from ccp.accounts.services import token_hash
from ccp.clock import utcnow
from ccp.orders.models import Order
from tests.factories import ContractFactory, FundLockFactory
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return {"CCP_SERVER_WORKERS": "1", "CCP_ORDER_WAIT_MS": "5000", "CCP_THROTTLE_ORDERS": ""}


def test_a_request_waiting_for_its_order_does_not_hold_up_the_others(served):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral, fundlock=D("1000")).client
    now = utcnow()
    ApiToken.objects.create(key_hash=token_hash("waiting-token"), prefix="waiting-", client=client, created_at=now,
                            expires_at=now + timedelta(hours=1))
    body = json.dumps({"client_order_id": "w-1", "contract": contract.symbol, "side": "buy", "price": "100",
                       "quantity": "1"}).encode()
    answered: list[int] = []
    waiting = threading.Thread(target=lambda: answered.append(served.request(
        "POST", "/api/v1/orders", body, {"Authorization": "Bearer waiting-token",
                                         "Content-Type": "application/json"})[0]))
    waiting.start()
    try:
        wait_for(lambda: Order.objects.filter(client_order_id="w-1").exists(), 10, "the order stored")
        # the order is stored and its request waits for a result no worker will give
        assert served.request("GET", "/api/v1/ping")[0] == 200
        assert served.request("GET", "/api/v1/orders", headers={"Authorization": "Bearer waiting-token"})[0] == 200
        assert not answered  # both answered while the order's request still waited
    finally:
        waiting.join(15)
    assert answered == [202]
