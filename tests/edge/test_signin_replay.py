"""One signed sign-in message sent many times at once (a replay racing the original) gives one token: the
challenge row's lock lets one request spend the nonce; the others are refused signin_nonce_used."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from eth_account import Account
from rest_framework.test import APIClient

from ccp.accounts.models import ApiToken, SignInChallenge
from tests.accounts.test_signin import sign
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_signed_message_sent_twelve_times_at_once_gives_one_token(settings):
    settings.CCP_THROTTLE_SIGNIN_IP = settings.CCP_THROTTLE_SIGNIN_ADDRESS = ""
    account = Account.create()
    ClientFactory(address=account.address.lower())
    message = APIClient().post("/api/v1/auth/nonce", {"address": account.address}, format="json").json()["message"]
    body = {"message": message, "signature": sign(account, message)}

    def send(_) -> tuple[int, str | None]:
        try:
            response = APIClient().post("/api/v1/auth/token", body, format="json")
            return response.status_code, response.json().get("code")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(12) as pool:
        answers = sorted(pool.map(send, range(12)), key=str)
    assert answers == [(201, None)] + [(401, "signin_nonce_used")] * 11
    assert ApiToken.objects.count() == 1 and SignInChallenge.objects.get().used_at is not None
