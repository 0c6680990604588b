"""Expiry on the private stream: each client with a position gets its payoffs and its new balance."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async as db

from ccp.contracts.models import ContractState
from ccp.contracts.services import expiry_key, expiry_settle
from ccp.risk.models import Lockup, Position
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.streams.conftest import QUIET, api_token_create, receive_until, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _expired_call():
    """An expired 100000 call (floor 50000, cap 150000): alice long 1, bob short 1 with its lockup."""
    contract = ContractFactory(state=ContractState.EXPIRED)
    alice = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000")).client
    bob = FundLockFactory(currency=contract.collateral, fundlock=Decimal("60000"),
                          lockup_value=Decimal("50000")).client
    for client, quantity in ((alice, 1), (bob, -1)):
        Position.objects.create(client=client, contract=contract, quantity=Decimal(quantity), updated_at=NOW)
    Lockup.objects.create(client=bob, pair=contract.pair, expiry_date=contract.expiry_date,
                          currency=contract.collateral, amount=Decimal("50000"), updated_at=NOW)
    return contract, (alice, api_token_create(alice)), (bob, api_token_create(bob))


def _settle(contract):
    expiry_settle(pair=contract.pair, expiry_date=contract.expiry_date, settlement_px=Decimal("120000"), now=NOW)


async def test_each_client_sees_its_own_payoffs_and_balance_after_expiry():
    contract, (_, alice_token), (_, bob_token) = await db(_expired_call)()
    key = await db(expiry_key)(contract.pair, contract.expiry_date)
    async with ws_connect("/ws/v1/private", [(b"authorization", f"Bearer {alice_token}".encode())]) as alice, \
            ws_connect("/ws/v1/private", [(b"authorization", f"Bearer {bob_token}".encode())]) as bob:
        await alice.receive_json_from()  # hello
        await bob.receive_json_from()
        await db(_settle)(contract)
        mine = (await receive_until(alice, lambda m: m["type"] == "expiry"))[-1]
        theirs = (await receive_until(bob, lambda m: m["type"] == "expiry"))[-1]
        assert (mine["expiry"], mine["settlement_price"]) == (key, "120000")
        assert mine["payoffs"] == [{"contract": contract.symbol, "amount": "20000", "position_closed": "1"}]
        assert {k: mine["balance"][k] for k in ("settle_value", "lockups", "available")} == {
            "settle_value": "20000", "lockups": "0", "available": "21000"}
        assert theirs["payoffs"] == [{"contract": contract.symbol, "amount": "-20000", "position_closed": "-1"}]
        assert {k: theirs["balance"][k] for k in ("settle_value", "lockups", "available")} == {
            "settle_value": "-20000", "lockups": "0", "available": "40000"}
        assert await alice.receive_nothing(timeout=QUIET) and await bob.receive_nothing(timeout=QUIET)
