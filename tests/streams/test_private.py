"""The private stream ws/v1/private: token check at connect, then the client's own orders and balances."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from eth_account import Account

from ccp.accounts.models import ApiToken
from ccp.accounts.services import api_token_revoke, token_hash
from ccp.clock import utcnow
from tests.factories import ClientFactory, ContractFactory, FundLockFactory
from tests.streams.conftest import (
    QUIET,
    TIMEOUT,
    api_token_create,
    order_accept,
    order_cancel_now,
    order_place,
    order_validate_now,
    receive_until,
    ws_connect,
    ws_refused,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
db = database_sync_to_async
PATH = "/ws/v1/private"


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def _trader(fundlock: str = "1000", contract=None):
    """A client with a wallet address, a live token and a collateral balance in the contract's currency."""
    contract = contract or ContractFactory()
    account = Account.create()
    client = ClientFactory(address=account.address.lower())
    FundLockFactory(client=client, currency=contract.collateral, fundlock=Decimal(fundlock))
    return contract, client, account.address, api_token_create(client)


# --- connect: the token decides -------------------------------------------------------------------

def _refused_cases() -> dict:
    def missing(client):
        return PATH, []

    def wrong(client):
        api_token_create(client)
        return PATH, bearer("not-a-token-anybody-was-given")

    def wrong_in_query(client):
        return f"{PATH}?token=not-a-token-anybody-was-given", []

    def empty_in_query(client):
        return f"{PATH}?token=", []

    def expired(client):
        return PATH, bearer(api_token_create(client, expires_in=-timedelta(seconds=1)))

    def expired_in_query(client):
        return f"{PATH}?token={api_token_create(client, expires_in=-timedelta(seconds=1))}", []

    def revoked(client):
        return PATH, bearer(api_token_create(client, revoked=True))

    def not_bearer_scheme(client):
        return PATH, [(b"authorization", f"Basic {api_token_create(client)}".encode())]

    def bearer_without_token(client):
        return PATH, [(b"authorization", b"Bearer ")]

    return {f.__name__: f for f in (missing, wrong, wrong_in_query, empty_in_query, expired, expired_in_query,
                                    revoked, not_bearer_scheme, bearer_without_token)}


@pytest.mark.parametrize("case", list(_refused_cases()))
async def test_connect_without_a_live_token_is_refused_with_4401(case):
    # given a registered client and a connection attempt without a live token of it
    _, client, _, _ = await db(_trader)()
    path, headers = await db(_refused_cases()[case])(client)
    # when it connects, then it is closed with 4401 before being accepted
    assert await ws_refused(path, headers) == 4401


async def test_token_signed_out_through_the_service_is_refused():
    # given a token that worked, then was revoked by sign-out
    _, client, _, token = await db(_trader)()
    async with ws_connect(PATH, bearer(token)) as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    api_token = await db(ApiToken.objects.get)(key_hash=token_hash(token))
    await db(api_token_revoke)(api_token=api_token, now=utcnow())
    # when it connects again, then it is refused
    assert await ws_refused(PATH, bearer(token)) == 4401


@pytest.mark.parametrize("via", ["header", "query"])
async def test_live_token_connects_and_says_hello_with_the_checksummed_address(via):
    # given a client with a live token
    _, client, checksum_address, token = await db(_trader)()
    path, headers = (PATH, bearer(token)) if via == "header" else (f"{PATH}?token={quote(token)}", [])
    # when it connects, then the first message names it by its EIP-55 address
    async with ws_connect(path, headers) as ws:
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "address": checksum_address,
                                                               "sequence": 0}
        assert checksum_address != client.address and checksum_address.lower() == client.address
        assert await ws.receive_nothing(timeout=QUIET)


# --- events: own orders and balances, nobody else's -----------------------------------------------

async def test_client_sees_its_order_accepted_and_its_balance_and_nobody_else_does(validation_queue):
    # given two signed-in clients, each on its private stream
    contract, alice, _, alice_token = await db(_trader)("1000")
    _, _, _, bob_token = await db(_trader)("1000", contract)
    async with ws_connect(PATH, bearer(alice_token)) as alice_ws, ws_connect(PATH, bearer(bob_token)) as bob_ws:
        assert (await alice_ws.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
        assert (await bob_ws.receive_json_from(timeout=TIMEOUT))["type"] == "hello"

        # when alice submits a buy at 100 for 1
        order = await db(order_place)(client=alice, contract=contract, side="buy", price="100", quantity="1",
                                      client_order_id="alice-1")
        # then she sees it received, holding nothing yet, and its validation is queued
        received = await alice_ws.receive_json_from(timeout=TIMEOUT)
        assert received["type"] == "order"
        assert received["order"] | {"created_at": None, "updated_at": None} == {
            "id": order.pk, "client_order_id": "alice-1", "contract": contract.symbol, "side": "buy",
            "kind": "limit", "price": "100", "quantity": "1", "quantity_requested": None, "time_in_force": "gtc",
            "reduce_only": False, "self_trade_prevention": "cancel_incoming", "trigger": "", "trigger_price": None,
            "trigger_source": "", "triggered_at": None, "parent": None, "leg": "", "attached": None,
            "filled_quantity": "0", "average_fill_price": None,
            "last_fill_at": None, "state": "received",
            "reject_reason": "", "unfilled_reason": "", "order_value": "0", "cancel_requested_at": None,
            "created_at": None, "updated_at": None}
        assert validation_queue == [order.pk]

        # when the validator accepts it
        await db(order_accept)(order=order)
        # then she sees it accepted with its order value, and her balance with that value held
        events = {event["type"]: event for event in [await alice_ws.receive_json_from(timeout=TIMEOUT)
                                                     for _ in range(2)]}
        assert set(events) == {"order", "balance"}
        assert events["order"]["order"]["id"] == order.pk
        assert events["order"]["order"]["state"] == "accepted"
        assert events["order"]["order"]["order_value"] == "100"
        balance = events["balance"]["balance"]
        assert {k: balance[k] for k in ("currency", "fundlock", "order_value", "available")} == {
            "currency": contract.collateral.symbol, "fundlock": "1000", "order_value": "100", "available": "900"}

        # when she cancels it, then she sees it cancelled and the value released
        await db(order_cancel_now)(order=order)
        events = {event["type"]: event for event in [await alice_ws.receive_json_from(timeout=TIMEOUT)
                                                     for _ in range(2)]}
        assert events["order"]["order"]["state"] == "cancelled"
        assert events["order"]["order"]["order_value"] == "0"
        assert events["balance"]["balance"]["order_value"] == "0"
        assert events["balance"]["balance"]["available"] == "1000"
        assert await alice_ws.receive_nothing(timeout=QUIET)

        # and bob, whose stream was open all along, saw none of it
        assert await bob_ws.receive_nothing(timeout=QUIET)


async def test_rejected_order_is_reported_with_its_reason_and_no_balance_change():
    # given a client with too little collateral for the order's worst case
    contract, client, _, token = await db(_trader)("50")
    async with ws_connect(PATH, bearer(token)) as ws:
        await ws.receive_json_from(timeout=TIMEOUT)
        order = await db(order_place)(client=client, contract=contract, side="buy", price="100", quantity="1")
        assert (await ws.receive_json_from(timeout=TIMEOUT))["order"]["state"] == "received"
        # when the validator runs
        await db(order_validate_now)(order=order)
        # then the order is rejected with the reason, and no balance event follows
        events = await receive_until(ws, lambda e: e["type"] == "order")
        assert [e["type"] for e in events] == ["order"]
        assert events[0]["order"]["state"] == "rejected"
        assert events[0]["order"]["reject_reason"] == "insufficient_collateral"
        assert await ws.receive_nothing(timeout=QUIET)


async def test_revoking_the_token_closes_an_open_private_stream():
    # given an open private stream
    contract, client, _, token = await db(_trader)()
    async with ws_connect(PATH, bearer(token)) as ws:
        await ws.receive_json_from(timeout=TIMEOUT)
        # when the client signs out (its token is revoked) and then an order of it changes
        api_token = await db(ApiToken.objects.get)(key_hash=token_hash(token))
        await db(api_token_revoke)(api_token=api_token, now=utcnow())
        await db(order_place)(client=client, contract=contract, side="buy", price="100", quantity="1")
        # then the stream is closed with 4401 instead of carrying the event
        output = await ws.receive_output(timeout=TIMEOUT)
        assert output == {"type": "websocket.close", "code": 4401}
