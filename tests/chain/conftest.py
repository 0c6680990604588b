"""An in-process EVM (py-evm via eth-tester) with a TestToken and a FundLock deployed once per module."""

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from ccp.settlement.chain.artifacts import load_artifact

GAS = 29_000_000  # explicit, so a reverting tx is mined (status 0) instead of failing gas estimation
REVERT = (TransactionFailed, ContractLogicError)  # eth-tester raises the first, real nodes the second


@pytest.fixture(scope="module")
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture(scope="module")
def accounts(w3):
    operator, alice, bob, mallory = w3.eth.accounts[:4]
    return operator, alice, bob, mallory


def deploy(w3, name, *args, sender):
    art = load_artifact(name)
    tx = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(*args).transact(
        {"from": sender, "gas": 5_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])


@pytest.fixture(scope="module")
def token(w3, accounts):
    operator, alice, bob, _ = accounts
    tok = deploy(w3, "TestToken", "Test USD", "TUSD", 6, sender=operator)
    for client in (alice, bob):
        send(w3, tok.functions.mint(client, 1_000_000), operator)
    return tok


@pytest.fixture(scope="module")
def fund_lock(w3, accounts):
    return deploy(w3, "FundLock", accounts[0], sender=accounts[0])


@pytest.fixture(autouse=True)
def _isolate(w3, token, fund_lock):
    # Every test starts from the freshly deployed state, without redeploying.
    snapshot = w3.testing.snapshot()
    yield
    w3.testing.revert(snapshot)


def send(w3, fn, sender):
    """Mine `fn` from `sender`; return the receipt of a successful transaction."""
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": GAS}))
    assert receipt.status == 1, "transaction reverted"
    return receipt


def assert_reverts(w3, fn, sender, reason=None):
    """`fn` reverts (with `reason`, if given) when called, and a mined transaction of it fails."""
    with pytest.raises(REVERT, match=reason):
        fn.call({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": GAS}))
    assert receipt.status == 0


def events(event, receipt):
    """The args of `event`'s logs in `receipt`, skipping the receipt's other events."""
    return [dict(e.args) for e in event().process_receipt(receipt, errors=DISCARD)]
