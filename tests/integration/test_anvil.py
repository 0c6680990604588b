"""End to end on a real local node (anvil, started by bin/test): deposit -> registration -> sign-in ->
order -> auction -> settlement -> the contract's balances equal the fund locks."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from eth_account import Account
from eth_account.messages import encode_defunct
from rest_framework.test import APIClient

from ccp.accounts.models import FundLock
from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.settlement.chain.connect import web3_for
from ccp.settlement.models import ChainContract, Deposit, OperatorNonce, SettlementBatch
from ccp.settlement.services import DEPOSITS_EDGE
from ccp.settlement.tasks import (
    deposits_monitor_task,
    reconciliation_task,
    settlement_confirm_task,
    settlement_submit_task,
)
from ccp.system.models import Edge
from tests.factories import ContractFactory, CurrencyFactory
from tests.integration.anvil import ANVIL_URL, OPERATOR, TRADERS, deposit, mine

pytestmark = [pytest.mark.skipif(not ANVIL_URL, reason="needs anvil: run bin/test"),
              pytest.mark.django_db(transaction=True)]


def sign_in(account) -> APIClient:
    api = APIClient()
    message = api.post("/api/v1/auth/nonce", {"address": account.address}, format="json").json()["message"]
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    token = api.post("/api/v1/auth/token", {"message": message, "signature": signature}, format="json").json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token['token']}")
    return api


def test_deposit_to_settlement_leaves_the_contract_equal_to_the_fund_locks(chain):
    from celery_app import app

    w3, token, fund_lock, usdc = chain
    alice, bob = (Account.from_key(k) for k in TRADERS[:2])
    for trader in (alice, bob):
        deposit(w3, token, fund_lock, trader.address, 100_000_000_000)  # 100,000 USDC
    mine(w3, 2)
    assert deposits_monitor_task() == 2 and deposits_monitor_task() == 0
    contract = ContractFactory(pair__quote=usdc, collateral=usdc)
    apis = {who: sign_in(who) for who in (alice, bob)}
    app.conf.task_always_eager = True
    try:
        for who, side in ((alice, "buy"), (bob, "sell")):
            body = {"client_order_id": f"{side}-1", "contract": contract.symbol, "side": side, "price": "2100",
                    "quantity": "0.5"}
            assert apis[who].post("/api/v1/orders", body, format="json").status_code == 202
    finally:
        app.conf.task_always_eager = False
    now = utcnow()
    auction = auction_open(pair=contract.pair, now=now, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=now, settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=now)
    assert auction_apply(auction_id=auction.pk, now=now).fills_count == 2
    assert settlement_submit_task() == 1 and settlement_submit_task() == 0  # a duplicate run sends nothing
    mine(w3, 3)
    settlement_confirm_task()
    settlement_confirm_task()
    assert SettlementBatch.objects.get().state == "confirmed"
    for fund in FundLock.objects.select_related("client"):
        on_chain = fund_lock.functions.balances(token.address, w3.to_checksum_address(fund.client.address)).call()
        assert (D(on_chain).scaleb(-6), fund.settle_value) == (fund.fundlock, 0)
    assert FundLock.objects.get(client__address=alice.address.lower()).fundlock == D("100000") - D("1050")
    assert reconciliation_task() == []
    # bob's short call locks 25,000: he cannot withdraw it
    refused = apis[bob].post("/api/v1/withdrawals", {"client_withdrawal_id": "bob-1", "currency": "USDC",
                                                     "amount": "80000"}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_collateral"


def test_a_reorg_shallower_than_the_confirmations_changes_nothing(chain):
    w3, token, fund_lock, usdc = chain
    alice = Account.from_key(TRADERS[0])
    deposit(w3, token, fund_lock, alice.address, 5_000_000)
    mine(w3, 1)
    deposits_monitor_task()  # the deposit is 1 block deep of the 2 needed: not credited yet
    assert not Deposit.objects.exists()
    # the last 2 blocks are replaced by blocks without the deposit
    w3.provider.make_request("anvil_reorg", [2, []])
    mine(w3, 3)
    deposits_monitor_task()
    assert not Deposit.objects.exists() and not FundLock.objects.exists()
    deposit(w3, token, fund_lock, alice.address, 7_000_000)
    mine(w3, 2)
    deposits_monitor_task()
    deposits_monitor_task()
    assert FundLock.objects.get().fundlock == D("7")
    assert reconciliation_task() == []


def test_a_stuck_settlement_is_replaced_and_applied_once(chain, settings):
    from ccp.accounts.models import Client
    from ccp.settlement.models import CashMovement

    w3, token, fund_lock, usdc = chain
    alice, bob = (Account.from_key(k) for k in TRADERS[:2])
    for trader in (alice, bob):
        deposit(w3, token, fund_lock, trader.address, 10_000_000)
    mine(w3, 2)
    deposits_monitor_task()
    for trader, amount in ((alice, D("-2")), (bob, D("2"))):
        client = Client.objects.get(address=trader.address.lower())
        CashMovement.objects.create(client=client, currency=usdc, amount=amount, origin="auction",
                                    origin_ref="auction-stuck", created_at=utcnow())
        FundLock.objects.filter(client=client).update(settle_value=amount)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        assert settlement_submit_task() == 1
        settings.CCP_SETTLEMENT_REPLACE_AFTER = timedelta(0)
        assert settlement_confirm_task()["replaced"] == 1  # pending in the mempool: replaced, higher gas price
        first, second = SettlementBatch.objects.order_by("id")
        assert (first.state, second.state, first.nonce) == ("replaced", "submitted", second.nonce)
        assert second.gas_price > first.gas_price and first.batch_id == second.batch_id
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    mine(w3, 3)
    settlement_confirm_task()
    assert SettlementBatch.objects.get(state="confirmed") == second
    for fund in FundLock.objects.select_related("client"):
        on_chain = fund_lock.functions.balances(token.address, w3.to_checksum_address(fund.client.address)).call()
        assert (D(on_chain).scaleb(-6), fund.settle_value) == (fund.fundlock, 0)
    assert FundLock.objects.get(client__address=alice.address.lower()).fundlock == D("8")


def test_a_node_that_lost_its_state_gets_a_fresh_deployment(settings):
    """bin/run keeps anvil's state; if it is lost, chain_deploy deploys again instead of trusting the
    recorded address, reads deposits from the new start and takes nonces from the chain again."""
    w3 = web3_for(ANVIL_URL)
    clean = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        CurrencyFactory(symbol="USDC", decimals=6)
        before = w3.provider.make_request("evm_snapshot", [])["result"]
        call_command("chain_deploy", url=ANVIL_URL, operator_key=OPERATOR, demo_token="USDC", verbosity=0)
        first = ChainContract.objects.get()
        operator = Account.from_key(OPERATOR).address
        Edge.objects.create(name=DEPOSITS_EDGE, block_number=first.deployed_block, updated_at=utcnow())
        OperatorNonce.objects.create(address=operator.lower(), next_nonce=w3.eth.get_transaction_count(operator) + 7)
        call_command("chain_deploy", url=ANVIL_URL, operator_key=OPERATOR, verbosity=0)  # state intact: kept
        assert ChainContract.objects.get() == first
        w3.provider.make_request("evm_revert", [before])  # the node forgets the deployment
        assert not w3.eth.get_code(w3.to_checksum_address(first.address))
        call_command("chain_deploy", url=ANVIL_URL, operator_key=OPERATOR, demo_token="USDC", verbosity=0)
        again = ChainContract.objects.get()
        assert w3.eth.get_code(w3.to_checksum_address(again.address))
        assert not Edge.objects.filter(name=DEPOSITS_EDGE).exists()
        assert not OperatorNonce.objects.filter(address=operator.lower()).exists()
        usdc = Currency.objects.get(symbol="USDC")
        assert w3.eth.get_code(w3.to_checksum_address(usdc.token_address))
    finally:
        w3.provider.make_request("evm_revert", [clean])
