"""Wallet sign-in over the API: nonce -> EIP-4361 message -> signature -> token."""

from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from eth_account import Account
from eth_account.messages import encode_defunct
from rest_framework.test import APIClient

from ccp.accounts.models import ApiToken, Client, SignInChallenge
from ccp.accounts.siwe import SignInMessage
from tests.conftest import NOW
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def wallet():
    account = Account.create()
    ClientFactory(address=account.address.lower())
    return account


def sign(account, message: str) -> str:
    return account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()


def ask_nonce(api, address: str):
    return api.post("/api/v1/auth/nonce", {"address": address}, format="json")


def sign_in(api, account) -> dict:
    message = ask_nonce(api, account.address).json()["message"]
    response = api.post("/api/v1/auth/token", {"message": message, "signature": sign(account, message)},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.json()
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "extra"} and body["message"]


def test_happy_path_gives_a_token_that_identifies_the_client(api, wallet):
    # given a registered wallet that asked for a nonce
    challenge = ask_nonce(api, wallet.address).json()
    parsed = SignInMessage.parse(challenge["message"])
    assert parsed.address == wallet.address and parsed.nonce == challenge["nonce"]
    assert parsed.domain == "localhost:8000"
    # when it signs the message and exchanges it
    body = api.post("/api/v1/auth/token",
                    {"message": challenge["message"], "signature": sign(wallet, challenge["message"])},
                    format="json").json()
    # then the token authenticates it, and only it
    assert body["address"] == wallet.address
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    me = api.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["address"] == wallet.address
    assert ApiToken.objects.get().key_hash != body["token"]  # only the hash is stored


def test_nonce_replay_is_refused(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    payload = {"message": message, "signature": sign(wallet, message)}
    assert api.post("/api/v1/auth/token", payload, format="json").status_code == 201
    assert_refused(api.post("/api/v1/auth/token", payload, format="json"), 401, "signin_nonce_used")
    assert ApiToken.objects.count() == 1


def test_expired_nonce_is_refused_and_stays_unused(api, wallet):
    with time_machine.travel(NOW, tick=False):
        message = ask_nonce(api, wallet.address).json()["message"]
    with time_machine.travel(NOW + timedelta(minutes=5, seconds=1), tick=False):
        response = api.post("/api/v1/auth/token", {"message": message, "signature": sign(wallet, message)},
                            format="json")
    assert_refused(response, 401, "signin_nonce_expired")
    assert SignInChallenge.objects.get().used_at is None and not ApiToken.objects.exists()


def test_signature_by_another_key_is_refused_and_the_nonce_still_works(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    intruder = Account.create()
    response = api.post("/api/v1/auth/token", {"message": message, "signature": sign(intruder, message)},
                        format="json")
    assert_refused(response, 401, "signin_wrong_signer")
    assert not ApiToken.objects.exists()
    # a failed attempt does not burn the owner's nonce
    ok = api.post("/api/v1/auth/token", {"message": message, "signature": sign(wallet, message)}, format="json")
    assert ok.status_code == 201


def test_message_for_another_domain_is_refused(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    phished = message.replace("localhost:8000 wants", "evil.example wants", 1)
    response = api.post("/api/v1/auth/token", {"message": phished, "signature": sign(wallet, phished)},
                        format="json")
    assert_refused(response, 401, "signin_wrong_domain")


def test_altered_message_is_refused(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    # the wallet signs a message whose expiry was pushed out by a man in the middle
    altered = message.replace("Expiration Time: 2", "Expiration Time: 3", 1)
    response = api.post("/api/v1/auth/token", {"message": altered, "signature": sign(wallet, altered)},
                        format="json")
    assert_refused(response, 401, "signin_message_altered")


def test_signature_of_the_original_message_does_not_cover_an_altered_one(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    other = ask_nonce(api, wallet.address).json()["message"]
    # a signature over one issued message presented with another issued message
    response = api.post("/api/v1/auth/token", {"message": other, "signature": sign(wallet, message)},
                        format="json")
    assert_refused(response, 401, "signin_wrong_signer")


def test_unregistered_address_gets_no_nonce(api):
    stranger = Account.create()
    assert_refused(ask_nonce(api, stranger.address), 403, "signin_address_not_registered")
    assert not SignInChallenge.objects.exists()


@override_settings(CCP_SIGNIN_ALLOW_ANY=True)
def test_demo_setting_lets_any_wallet_sign_in_and_registers_it(api):
    stranger = Account.create()
    assert sign_in(api, stranger)["address"] == stranger.address
    assert Client.objects.filter(address=stranger.address.lower()).exists()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"message": "hello", "signature": "0x00"}, 400, "signin_message_malformed"),
        ({"message": ""}, 400, "invalid_input"),
        ({}, 400, "invalid_input"),
    ],
)
def test_malformed_token_requests_are_refused(api, payload, status, code):
    assert_refused(api.post("/api/v1/auth/token", payload, format="json"), status, code)


def test_garbage_signature_is_refused(api, wallet):
    message = ask_nonce(api, wallet.address).json()["message"]
    response = api.post("/api/v1/auth/token", {"message": message, "signature": "0x1234"}, format="json")
    assert_refused(response, 400, "signin_signature_invalid")
    assert SignInChallenge.objects.get().used_at is None


@pytest.mark.parametrize("address", ["0x123", "not-an-address", "0x" + "g" * 40, 42,
                                     "0xAbCdEf0000000000000000000000000000000000"])
def test_bad_addresses_are_refused(api, address):
    response = ask_nonce(api, address)
    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_address", "invalid_input"}
    assert not SignInChallenge.objects.exists()


def test_malformed_json_is_refused(api):
    response = api.post("/api/v1/auth/nonce", data="{not json", content_type="application/json")
    assert_refused(response, 400, "malformed_request")


def test_expired_revoked_and_unknown_tokens_are_refused(api, wallet):
    with time_machine.travel(NOW, tick=False):
        token = sign_in(api, wallet)["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    with time_machine.travel(NOW + timedelta(hours=24, seconds=1), tick=False):
        assert_refused(api.get("/api/v1/auth/me"), 401, "token_expired")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert api.post("/api/v1/auth/signout").status_code == 204
        assert_refused(api.get("/api/v1/auth/me"), 401, "token_invalid")
    api.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    assert_refused(api.get("/api/v1/auth/me"), 401, "token_invalid")
    api.credentials()
    assert_refused(api.get("/api/v1/auth/me"), 401, "not_authenticated")
