"""bin/run's local chain: anvil started by bin/stack.py with a state file keeps its chain across a
restart, like the database does (otherwise every restart would strand the recorded contracts)."""

import importlib.util
import os
import sys

import pytest
from web3 import Web3

from tests.processes import REPO, free_port

pytestmark = pytest.mark.skipif(not os.environ.get("CCP_ANVIL"), reason="needs anvil: run bin/test")


def _stack():
    spec = importlib.util.spec_from_file_location("ccp_stack", REPO / "bin" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_anvil_keeps_its_chain_across_a_restart(tmp_path):
    stack = _stack()
    anvil = stack.Anvil(free_port(), tmp_path / "anvil-state.json")
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url()))
        funder, receiver = w3.eth.accounts[:2]
        before = w3.eth.get_balance(receiver)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": funder, "to": receiver, "value": 12345}))
    finally:
        anvil.stop()
    assert (tmp_path / "anvil-state.json").exists()
    anvil = stack.Anvil(free_port(), tmp_path / "anvil-state.json")
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url()))
        assert w3.eth.block_number >= receipt.blockNumber
        assert w3.eth.get_balance(receiver) == before + 12345
        assert w3.eth.get_transaction_receipt(receipt.transactionHash).status == 1
    finally:
        anvil.stop()
