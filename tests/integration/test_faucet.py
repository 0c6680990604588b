"""The demo faucet on anvil: a fresh wallet gets demo USDC and gas and can deposit with them; the
operator's nonce row stays in step with the chain (settlement sends from the same account); the
faucet is throttled per IP and per wallet, and absent unless CCP_DEMO_FAUCET is on."""

from decimal import Decimal as D

import pytest
from eth_account import Account
from rest_framework.test import APIClient

from ccp.accounts.models import FundLock
from ccp.clock import utcnow
from ccp.settlement.models import OperatorNonce
from ccp.settlement.services import deposits_monitor
from ccp.settlement.tasks import _chain
from tests.integration.anvil import ANVIL_URL, OPERATOR, mine

pytestmark = [pytest.mark.skipif(not ANVIL_URL, reason="needs anvil: run bin/test"),
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def faucet(chain, settings):
    settings.CCP_DEMO_FAUCET, settings.CCP_THROTTLE_FAUCET = True, "2/h"
    return chain


def ask(address: str, ip: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post("/api/v1/faucet", {"address": address}, format="json")


def test_a_fresh_wallet_gets_usdc_and_gas_and_deposits_them(faucet):
    """Given a wallet with nothing; when it asks the faucet; then it holds 10,000 USDC and 1 ETH, pays
    the gas of its own approve and deposit, and the deposit monitor credits it."""
    w3, token, fund_lock, usdc = faucet
    wallet = Account.create()
    response = ask(wallet.address.lower())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["address"] == wallet.address and body["gas_wei"] == str(10**18)
    [mint] = body["mints"]
    assert (mint["currency"], mint["amount"]) == ("USDC", "10000")
    assert w3.eth.wait_for_transaction_receipt(mint["tx_hash"]).status == 1
    assert token.functions.balanceOf(wallet.address).call() == 10_000 * 10**6

    units = 2_500 * 10**6
    for call in (token.functions.approve(fund_lock.address, units), fund_lock.functions.deposit(token.address, units)):
        tx = call.build_transaction({"from": wallet.address, "nonce": w3.eth.get_transaction_count(wallet.address),
                                     "gas": 200_000, "gasPrice": w3.eth.gas_price})
        assert w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)).status == 1
    mine(w3, 2)
    chain, deployed = _chain()
    deposits_monitor(chain=chain, now=utcnow(), start_block=deployed.deployed_block)
    assert FundLock.objects.get(client__address=wallet.address.lower()).fundlock == D(2500)


def test_mints_take_the_operators_nonce_row_in_step_with_the_chain(faucet):
    """Two wallets served: the row's next nonce is the operator's transaction count, no gap, no reuse."""
    w3 = faucet[0]
    operator = Account.from_key(OPERATOR).address
    for n in range(2):
        assert ask(Account.create().address, ip=f"10.0.1.{n}").status_code == 200
    row = OperatorNonce.objects.get(address=operator.lower())
    assert row.next_nonce == w3.eth.get_transaction_count(operator, "pending") == w3.eth.get_transaction_count(operator)


def test_the_faucet_is_throttled_per_wallet_and_per_ip(faucet):
    a, b, c = (Account.create().address for _ in range(3))
    assert [ask(a, "10.0.2.1").status_code, ask(a, "10.0.2.2").status_code] == [200, 200]
    refused = ask(a, "10.0.2.3")  # a third time for this wallet, from a fresh IP address
    assert refused.status_code == 429 and refused.json()["code"] == "throttled" and "Retry-After" in refused
    assert ask(b, "10.0.2.1").status_code == 200  # the first IP's second request
    assert ask(c, "10.0.2.1").status_code == 429  # its third, for a wallet never served
    assert faucet[1].functions.balanceOf(c).call() == 0


def test_without_the_demo_switch_there_is_no_faucet(chain, settings):
    settings.CCP_DEMO_FAUCET = False
    wallet = Account.create().address
    response = ask(wallet)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert chain[1].functions.balanceOf(wallet).call() == 0 and chain[0].eth.get_balance(wallet) == 0


def test_a_bad_address_is_refused_and_mints_nothing(faucet):
    response = ask("0x12")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert not OperatorNonce.objects.exists()


def test_a_chain_node_that_does_not_answer_is_a_503_and_takes_no_nonce(faucet, settings):
    """Given the faucet configured but its node gone (nothing listens on the port); when a wallet asks; then a 503
    chain_unavailable in the error shape, and the operator's nonce row is as it was."""
    before = list(OperatorNonce.objects.values_list("address", "next_nonce"))
    settings.CCP_CHAIN_URL = "http://127.0.0.1:1"
    response = ask(Account.create().address)
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "chain_unavailable"
    assert list(OperatorNonce.objects.values_list("address", "next_nonce")) == before
