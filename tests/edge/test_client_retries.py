"""The client package against the served API (``python -m ccp.server``): a refusal is an ``ApiError``
with the server's code, message, extra and status; a 429 is sent again after its Retry-After, so a
client with retries gets through where one without them is refused."""

import time

import pytest
from ccp_client import ApiError, Client
from eth_account import Account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    # one nonce per wallet per 5 s; any wallet may sign in (no deposit on this server's chain)
    return {"CCP_THROTTLE_SIGNIN_ADDRESS": "1/5s", "CCP_SIGNIN_ALLOW_ANY": "1"}


def test_a_throttled_request_is_sent_again_after_retry_after(served):
    key = Account.create().key
    impatient = Client(served.url, key, retries=0)
    time.sleep(5 - time.time() % 5)  # the throttle counts in fixed 5 s windows: both nonces fall in this one
    impatient.sign_in()
    with pytest.raises(ApiError) as refused:
        impatient.sign_in()  # a second nonce for the wallet within the window
    assert (refused.value.status, refused.value.code) == (429, "throttled")
    assert 1 <= refused.value.extra["retry_after_s"] <= 5

    patient = Client(served.url, key)  # the same wallet: still throttled, so it waits and tries again
    assert patient.sign_in() and patient.request("GET", "/api/v1/auth/me")["address"] == patient.address


def test_a_refusal_carries_the_servers_code_and_status(served):
    trader = Client(served.url, Account.create().key)
    with pytest.raises(ApiError) as refused:
        trader.balances()
    assert (refused.value.status, refused.value.code) == (401, "not_authenticated")
    trader.sign_in()
    with pytest.raises(ApiError) as refused:
        trader.order(999_999)
    assert (refused.value.status, refused.value.code, refused.value.message) == (404, "order_not_found",
                                                                                 "No such order.")
    with pytest.raises(ApiError) as refused:
        trader.place_order("NO-SUCH", "buy", "1", "1")
    assert (refused.value.status, refused.value.code) == (400, "unknown_contract")
