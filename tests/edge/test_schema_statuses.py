"""Each status an operation really answers is one its OpenAPI schema documents (a fuzzer checks answers against
the schema): the sign-in's 401 and 403, the perpetual position operations' 409, every operation's 406."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from eth_account import Account

from ccp.accounts.siwe import SignInMessage
from tests.edge.conftest import served_schema
from tests.factories import FundLockFactory
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def documented(method: str, path: str) -> set[int]:
    return {int(status) for status in served_schema()["paths"][path][method.lower()]["responses"]}


def test_the_sign_in_s_refusals_are_documented(client):
    address = Account.create().address
    message = SignInMessage(domain="ccp.example", address=address, uri="https://ccp.example", chain_id=1,
                            nonce="abcdefgh12345678", issued_at=datetime.now(UTC),
                            expiration_time=datetime.now(UTC) + timedelta(minutes=5)).text()
    response = client.post("/api/v1/auth/token", {"message": message, "signature": "0x" + "00" * 65},
                           "application/json")
    assert (response.status_code, response.json()["code"]) == (401, "signin_nonce_unknown")
    assert 401 in documented("POST", "/api/v1/auth/token")
    with override_settings(CCP_SIGNIN_ALLOW_ANY=False, CCP_SIGNIN_ALLOWED_ADDRESSES=[]):
        response = client.post("/api/v1/auth/nonce", {"address": address}, "application/json")
    assert (response.status_code, response.json()["code"]) == (403, "signin_address_not_registered")
    assert 403 in documented("POST", "/api/v1/auth/nonce") and 403 in documented("POST", "/api/v1/auth/token")


@pytest.mark.parametrize(("path", "body", "code"), [
    ("/api/v1/positions", {"side": "long", "margin": "100", "leverage": "2"}, "index_stale"),
    ("/api/v1/positions/estimate", {"side": "long", "margin": "100", "leverage": "2"}, "index_stale"),
    ("/api/v1/positions/close", {}, "position_flat"),
    ("/api/v1/positions/margin", {"amount": "1"}, "position_flat"),
    ("/api/v1/positions/tpsl", {"take_profit": "60000"}, "position_flat"),
])
def test_the_position_operations_409s_are_documented(api_as, perp, path, body, code):  # noqa: F811
    trader = FundLockFactory(currency=perp.collateral).client
    response = api_as(trader).post(path, {"contract": perp.symbol, **body}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, code)
    assert 409 in documented("POST", path)


def test_406_is_documented_everywhere(client):
    response = client.get("/api/v1/contracts", HTTP_ACCEPT="text/html")
    assert (response.status_code, response.json()["code"]) == (406, "not_acceptable")
    schema = served_schema()
    assert all("406" in operation["responses"] for methods in schema["paths"].values()
               for operation in methods.values())
