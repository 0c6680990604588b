import pytest
from eth_account import Account
from web3 import Web3

from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.client import FundLockClient
from ccp.settlement.services import deposits_monitor, settlement_confirm, settlement_submit
from tests.conftest import NOW
from tests.factories import CurrencyFactory
from tests.settlement.evm import GAS, SerialProvider, deposit


@pytest.fixture
def chain(settings):
    """An eth-tester chain with a TestToken (USDC) and a FundLock run by a fresh operator account."""
    settings.CCP_CHAIN_CONFIRMATIONS = 3
    w3 = Web3(SerialProvider())
    funder, alice, bob = w3.eth.accounts[:3]
    operator = Account.create()
    w3.eth.send_transaction({"from": funder, "to": operator.address, "value": 10**20})

    def deploy(name, *args):
        art = load_artifact(name)
        tx = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(*args).transact(
            {"from": funder, "gas": GAS})
        return w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(tx).contractAddress, abi=art["abi"])

    token = deploy("TestToken", "USD Coin", "USDC", 6)
    fund_lock = deploy("FundLock", operator.address)
    usdc = CurrencyFactory(symbol="USDC", decimals=6, token_address=token.address.lower())
    house = Account.create().address
    return w3, token, fund_lock, FundLockClient(w3, fund_lock.address), operator, usdc, (alice, bob), house


@pytest.fixture
def funded(chain):
    """alice and bob hold 1000 USDC each in FundLock, credited by the deposit monitor."""
    w3, token, fund_lock, client, *_ = chain
    for who in chain[6]:
        deposit(w3, token, fund_lock, who, 1_000_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    return chain


@pytest.fixture
def settle_all(django_capture_on_commit_callbacks):
    """Submit (sending after commit, as in production), mine past the confirmations, confirm."""

    def run(w3, client, operator, house, now=NOW, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            batches = settlement_submit(chain=client, operator=operator, house=house, now=now, **kwargs)
        w3.testing.mine(3)
        settlement_confirm(chain=client, now=now)
        return batches

    return run
