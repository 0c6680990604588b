"""GET /api/v1/chain: what a trader's wallet needs to deposit, usable as served, and an honest answer
when the backend watches no chain."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ccp.accounts.models import FundLock
from ccp.settlement.models import ChainContract
from ccp.settlement.services import deposits_monitor
from tests.conftest import NOW
from tests.factories import CurrencyFactory
from tests.settlement.evm import GAS

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(chain, settings):
    """The chain fixture's FundLock recorded as ``chain_deploy`` does, with the chain loops on."""
    w3, _, fund_lock, *_ = chain
    settings.CCP_CHAIN_URL = "http://node.invalid:8545"  # only its presence matters: nothing is called
    ChainContract.objects.create(name="FundLock", address=fund_lock.address.lower(), chain_id=w3.eth.chain_id,
                                 deployed_block=1, created_at=NOW)
    return chain


def test_a_wallet_deposits_with_only_what_the_endpoint_serves(recorded):
    """Given a deployed FundLock and USDC; when a wallet deposits using the served addresses, decimals and
    ABIs alone; then the deposit monitor credits the amount the wallet meant."""
    w3, token, _, client, *_ = recorded
    alice = w3.eth.accounts[1]
    body = APIClient().get("/api/v1/chain").json()
    assert body["configured"] is True and body["chain_id"] == w3.eth.chain_id and body["confirmations"] == 3
    [usdc] = body["tokens"]
    assert usdc == {"symbol": "USDC", "name": usdc["name"], "address": token.address, "decimals": 6}
    assert body["fund_lock_address"] == w3.to_checksum_address(body["fund_lock_address"])

    units = 250 * 10 ** usdc["decimals"]
    token.functions.mint(alice, units).transact({"from": w3.eth.accounts[0], "gas": GAS})
    served_token = w3.eth.contract(address=usdc["address"], abi=body["token_abi"])
    served_lock = w3.eth.contract(address=body["fund_lock_address"], abi=body["fund_lock_abi"])
    served_token.functions.approve(served_lock.address, units).transact({"from": alice, "gas": GAS})
    served_lock.functions.deposit(usdc["address"], units).transact({"from": alice, "gas": GAS})
    w3.testing.mine(body["confirmations"])
    deposits_monitor(chain=client, now=NOW)

    assert FundLock.objects.get(client__address=alice.lower()).fundlock == Decimal(250)
    assert "mint" not in {entry.get("name") for entry in body["token_abi"]}  # the ERC-20 a real token has


def test_tokens_without_an_address_are_not_offered(recorded):
    CurrencyFactory(symbol="BTC", token_address=None)
    symbols = [t["symbol"] for t in APIClient().get("/api/v1/chain").json()["tokens"]]
    assert symbols == ["USDC"]


@pytest.mark.parametrize("chain_url, deployed", [("", True), ("http://node.invalid:8545", False)])
def test_no_chain_configured_is_said_plainly(settings, chain_url, deployed):
    """No node URL, or no FundLock deployed: 200, configured false, no address and no token to send to."""
    settings.CCP_CHAIN_URL = chain_url
    CurrencyFactory(symbol="USDC", token_address="0x" + "ab" * 20)
    if deployed:
        ChainContract.objects.create(name="FundLock", address="0x" + "cd" * 20, chain_id=31337, deployed_block=1,
                                     created_at=NOW)
    response = APIClient().get("/api/v1/chain")
    assert response.status_code == 200
    body = response.json()
    assert (body["configured"], body["chain_id"], body["fund_lock_address"], body["tokens"]) == (False, None, None, [])
    assert any(entry.get("name") == "deposit" for entry in body["fund_lock_abi"])


def test_unknown_query_parameters_are_refused():
    response = APIClient().get("/api/v1/chain?verbose=1")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
