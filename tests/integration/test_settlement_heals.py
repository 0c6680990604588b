"""Settlement heals itself on a real node (anvil): the operator's key sends transactions behind the
backend's back in the middle of a run (token mints signed with web3: some replace batches waiting in the
node at their nonces, some take the node's next nonces before the backend's next batch), and every cash
movement still settles exactly once, with nobody's help; and after the node lost blocks (evm_revert), the
deposit monitor alerts at once and settlement sends again what the chain lost."""

from decimal import Decimal as D

import pytest
from eth_account import Account
from web3 import Web3

from ccp.accounts.models import FundLock
from ccp.settlement.models import CashMovementTracking, OperatorNonce, SettlementBatch
from ccp.settlement.services import DEPOSITS_EDGE
from ccp.settlement.tasks import (
    deposits_monitor_task,
    reconciliation_task,
    settlement_confirm_task,
    settlement_submit_task,
)
from ccp.system.models import Edge, OperatorAlert
from ccp.system.services import edge_rewind
from tests.conftest import NOW
from tests.integration.anvil import ANVIL_URL, OPERATOR, TRADERS, deposit, mine
from tests.settlement.evm import book

pytestmark = [pytest.mark.skipif(not ANVIL_URL, reason="needs anvil: run bin/test"),
              pytest.mark.django_db(transaction=True)]
OUTSIDER = "0x00000000000000000000000000000000000000aa"


def outside_mints(w3, token, count: int, nonces: list[int] | None = None) -> None:
    """Token mints from the operator's key by another tool: at the given nonces, or at the node's pending
    count; at twice the gas price, so they replace whatever waits in the node at their nonce."""
    operator = Account.from_key(OPERATOR)
    for k in range(count):
        nonce = nonces[k] if nonces else w3.eth.get_transaction_count(operator.address, "pending")
        tx = token.functions.mint(Web3.to_checksum_address(OUTSIDER), 1).build_transaction({
            "from": operator.address, "nonce": nonce, "gas": 100_000, "gasPrice": w3.eth.gas_price * 2,
            "chainId": w3.eth.chain_id})
        w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)


def funded(w3, token, fund_lock, traders) -> None:
    for trader in traders:
        deposit(w3, token, fund_lock, trader.address, 100_000_000_000)  # 100,000 USDC
    mine(w3, 2)
    assert deposits_monitor_task() == len(traders)


def assert_each_movement_settled_once(w3, token, fund_lock, movements) -> None:
    for movement in movements:
        assert CashMovementTracking.objects.filter(cash_movement=movement, state="confirmed").count() == 1
    confirmed = set(SettlementBatch.objects.filter(state="confirmed").values_list("batch_id", flat=True))
    logs = fund_lock.events.BatchSettled.get_logs(from_block=0, to_block="latest")
    assert sorted("0x" + log["args"]["batch_id"].hex() for log in logs) == sorted(confirmed)  # each applied once
    for fund in FundLock.objects.select_related("client"):
        on_chain = fund_lock.functions.balances(token.address, w3.to_checksum_address(fund.client.address)).call()
        assert (D(on_chain).scaleb(-6), fund.settle_value) == (fund.fundlock, 0)
    operator = Account.from_key(OPERATOR).address
    assert OperatorNonce.objects.get().next_nonce == w3.eth.get_transaction_count(operator)


def test_every_movement_settles_once_while_the_operator_key_is_used_outside(chain):
    w3, token, fund_lock, usdc = chain
    traders = [Account.from_key(key) for key in TRADERS]
    funded(w3, token, fund_lock, traders)
    a, b, c = (t.address for t in traders)
    w3.provider.make_request("evm_setAutomine", [False])  # blocks only when mined, like a node's block time
    movements = []
    for round_ in range(8):
        for k in range(3 if round_ == 4 else 1):
            movements += book(usdc, f"auction-{round_}-{k}", {a: D(-round_ - 2), b: D(round_ + 1 - k), c: D(1 + k)})
        if round_ == 6:  # another tool takes the node's next two nonces before the backend's next batch
            outside_mints(w3, token, 2)
        sent = settlement_submit_task()
        if round_ in (2, 4):  # another tool sends at the nonces of the batches just sent: three in round 4
            just_sent = SettlementBatch.objects.filter(state="submitted").order_by("-id")[:sent]
            outside_mints(w3, token, sent, nonces=sorted(batch.nonce for batch in just_sent))
        mine(w3, 1)
        settlement_confirm_task()
    for _ in range(10):  # beat keeps running; nobody helps
        settlement_submit_task()
        mine(w3, 1)
        settlement_confirm_task()
    # re-signed: round 2's batch and round 4's three (their nonces taken), round 6's (its nonce taken before it)
    assert SettlementBatch.objects.filter(state="replaced").count() == 5
    assert_each_movement_settled_once(w3, token, fund_lock, movements)
    assert token.functions.balanceOf(Web3.to_checksum_address(OUTSIDER)).call() == 6  # the outside mints too
    assert not OperatorAlert.objects.exists()
    assert reconciliation_task() == []


def test_after_the_node_lost_blocks_the_monitor_alerts_and_settlement_sends_again(chain):
    w3, token, fund_lock, usdc = chain
    traders = [Account.from_key(key) for key in TRADERS[:2]]
    funded(w3, token, fund_lock, traders)
    before = w3.provider.make_request("evm_snapshot", [])["result"]
    start = w3.eth.block_number
    movements = book(usdc, "auction-1", {traders[0].address: D("-7"), traders[1].address: D("7")})
    assert settlement_submit_task() == 1
    mine(w3, 3)
    assert settlement_confirm_task()["confirmed"] == 1
    deposits_monitor_task()  # the deposit edge passes the batch's block
    w3.provider.make_request("evm_revert", [before])  # the node restarted with older state
    assert deposits_monitor_task() == 0
    assert OperatorAlert.objects.get(key=f"reorg:{DEPOSITS_EDGE}").resolved_at is None
    assert reconciliation_task() == []  # nothing to compare at a block the node lacks
    assert settlement_confirm_task()["lost"] == 1  # moved back and sent again
    assert OperatorAlert.objects.filter(key__startswith="reorg:settlement:").count() == 1
    mine(w3, 3)
    assert settlement_confirm_task()["confirmed"] == 1
    assert_each_movement_settled_once(w3, token, fund_lock, movements)
    edge_rewind(name=DEPOSITS_EDGE, block_number=start, now=NOW)  # as the alert advises
    deposits_monitor_task()
    assert Edge.objects.get(name=DEPOSITS_EDGE).block_number == w3.eth.block_number - 2
    assert OperatorAlert.objects.get(key=f"reorg:{DEPOSITS_EDGE}").resolved_at is not None
    assert reconciliation_task() == []
