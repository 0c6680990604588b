"""bin/run's local chain: anvil started by bin/stack.py with a state file keeps its chain across a
restart, like the database does (otherwise every restart would strand the recorded contracts), also
through a SIGKILL (it writes its state every second) and a state file torn by one."""

import importlib.util
import json
import os
import signal
import sys

import pytest
from web3 import Web3
from web3.exceptions import TransactionNotFound

from tests.processes import REPO, free_port, wait_for

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


def _saved_block(state_file) -> int:
    """The newest block in anvil's state file, or -1 (not written yet, or caught in the middle of a write)."""
    try:
        return json.loads(state_file.read_text())["best_block_number"]
    except (OSError, ValueError, KeyError):
        return -1


def test_anvil_keeps_its_chain_through_a_kill(tmp_path):
    stack = _stack()
    state = tmp_path / "anvil-state.json"
    anvil = stack.Anvil(free_port(), state)
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url()))
        funder, receiver = w3.eth.accounts[:2]
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": funder, "to": receiver, "value": 54321}))
        # anvil writes its state every second now, not only on exit: the block reaches the file, then a kill
        wait_for(lambda: _saved_block(state) >= receipt.blockNumber, 15, "anvil to write the block to its state")
    finally:
        os.kill(anvil.proc.pid, signal.SIGKILL)
        anvil.proc.wait(10)
    anvil = stack.Anvil(free_port(), state)
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url()))
        assert w3.eth.get_transaction_receipt(receipt.transactionHash).status == 1
        assert w3.eth.get_balance(receiver) >= 54321
    finally:
        anvil.stop()


def test_a_state_file_torn_by_a_kill_falls_back_to_the_state_of_the_previous_start(tmp_path):
    stack = _stack()
    state = tmp_path / "anvil-state.json"
    receipts = []
    for value in (111, 222):  # two runs, each stopped cleanly: the second start keeps a copy of the first's state
        anvil = stack.Anvil(free_port(), state)
        anvil.start()
        try:
            w3 = Web3(Web3.HTTPProvider(anvil.url()))
            funder, receiver = w3.eth.accounts[:2]
            receipts.append(w3.eth.wait_for_transaction_receipt(
                w3.eth.send_transaction({"from": funder, "to": receiver, "value": value})))
        finally:
            anvil.stop()
    text = state.read_text()
    state.write_text(text[:len(text) // 2])  # as a SIGKILL in the middle of anvil's rewrite leaves it
    anvil = stack.Anvil(free_port(), state)
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url()))
        assert w3.eth.get_transaction_receipt(receipts[0].transactionHash).status == 1
        with pytest.raises(TransactionNotFound):  # what the second run added is what the torn file lost
            w3.eth.get_transaction_receipt(receipts[1].transactionHash)
        assert (tmp_path / "anvil-state.json.torn").read_text() == text[:len(text) // 2]
    finally:
        anvil.stop()
