"""Settlement heals itself, on the in-process EVM: batches whose nonce went to a transaction sent from the
operator's key outside the backend are re-signed under their own batch ids; a batch id the contract already
applied is confirmed, never sent again; a failing batch backs off and raises an alert; an unconfirmed one
raises an alert; a submit run is bounded; a confirmed batch the chain lost is moved back and sent again."""

import copy
from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.settlement import services
from ccp.settlement.models import CashMovementTracking, OperatorNonce, SettlementBatch
from ccp.settlement.services import settlement_confirm, settlement_submit
from ccp.system.models import OperatorAlert
from tests.conftest import NOW
from tests.settlement.evm import assert_settled_once, book, deposit, operator_send

pytestmark = pytest.mark.django_db
NOTHING = {"confirmed": 0, "failed": 0, "resent": 0, "replaced": 0, "resigned": 0, "lost": 0}


@pytest.fixture
def beat(chain, django_capture_on_commit_callbacks):
    """The settlement tasks as beat runs them, with the operator's key; sends happen after commit."""
    w3, token, fund_lock, client, operator, usdc, _, house = chain

    class Beat:
        def submit(self, now=NOW, send=True):
            with django_capture_on_commit_callbacks(execute=send):
                return settlement_submit(chain=client, operator=operator, house=house, now=now)

        def confirm(self, now=NOW):
            with django_capture_on_commit_callbacks(execute=True):
                return settlement_confirm(chain=client, operator=operator, house=house, now=now)

    return Beat()


def origins(batches) -> list[str]:
    return [CashMovementTracking.objects.filter(tx_hash=b.tx_hash).first().cash_movement.origin_ref for b in batches]


def test_batches_whose_nonces_went_to_outside_transactions_are_resigned_and_settle_once(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    movements = [m for k in range(1, 4) for m in book(usdc, f"auction-{k}", {alice: D(-k), bob: D(k)})]
    batches = beat.submit(send=False)  # signed and recorded; the worker dies before it sends them
    for batch in batches:  # meanwhile three transactions from the operator's key take exactly those nonces
        operator_send(w3, operator, nonce=batch.nonce)
    counts = beat.confirm()
    assert counts["resigned"] == 3
    assert OperatorNonce.objects.get().next_nonce == client.nonce(operator.address)
    resigned = SettlementBatch.objects.filter(state="submitted").order_by("nonce")
    assert [b.batch_id for b in resigned] == [b.batch_id for b in batches]  # same batch ids, fresh nonces
    assert min(b.nonce for b in resigned) > max(b.nonce for b in batches)
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 3
    assert_settled_once(client, token, movements)
    assert beat.submit() == [] and beat.confirm() == NOTHING


def test_a_nonce_row_behind_the_chain_is_resynced_after_outside_transactions(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    movements = book(usdc, "auction-1", {alice: D("-1"), bob: D("1")})
    beat.submit()
    w3.testing.mine(3)
    beat.confirm()
    operator_send(w3, operator)  # two transactions from the operator's key after the backend's last nonce:
    operator_send(w3, operator)  # the next batch is signed with a nonce the node calls too low
    movements += book(usdc, "auction-2", {alice: D("-2"), bob: D("2")})
    [stale] = beat.submit()
    assert client.receipt(stale.tx_hash) is None
    assert beat.confirm()["resigned"] == 1
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 1
    assert_settled_once(client, token, movements)


def test_a_batch_id_the_contract_already_applied_is_confirmed_not_sent_again(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    movements = book(usdc, "auction-1", {alice: D("-3"), bob: D("3")})
    [batch] = beat.submit(send=False)
    # The same batch sent from the operator's key by another tool: another transaction, the same batch id.
    client.send(client.sign_settle(operator=operator, batch_id=bytes.fromhex(batch.batch_id[2:]), token=token.address,
                                   clients=[alice, bob], amounts=[-3_000_000, 3_000_000], nonce=batch.nonce,
                                   gas_price=w3.eth.gas_price * 2))
    w3.testing.mine(3)
    assert beat.confirm() == {**NOTHING, "confirmed": 1}
    assert_settled_once(client, token, movements)
    assert SettlementBatch.objects.get().state == "confirmed"


def test_a_batch_reverted_because_its_id_was_applied_elsewhere_is_confirmed(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    on_chain = client.nonce(operator.address)
    OperatorNonce.objects.create(address=operator.address.lower(), next_nonce=on_chain + 1)  # one taken outside
    movements = book(usdc, "auction-1", {alice: D("-3"), bob: D("3")})
    [batch] = beat.submit(send=False)
    client.send(client.sign_settle(operator=operator, batch_id=bytes.fromhex(batch.batch_id[2:]), token=token.address,
                                   clients=[alice, bob], amounts=[-3_000_000, 3_000_000], nonce=on_chain,
                                   gas_price=w3.eth.gas_price))
    client.send(services.SignedTx(batch.tx_hash, bytes(batch.raw_tx), batch.nonce))  # mined after it: reverts
    assert client.receipt(batch.tx_hash)["status"] == 0
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 1
    assert_settled_once(client, token, movements)


def test_a_failing_batch_waits_longer_each_time_and_raises_an_alert(funded, beat, settings):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    settings.CCP_SETTLEMENT_RETRY_BASE, settings.CCP_SETTLEMENT_ALERT_FAILURES = timedelta(seconds=30), 3
    # The books hold 1000 more for alice than the chain does (a deposit the chain lost): the batch reverts.
    FundLock.objects.filter(client__address=alice.lower()).update(fundlock=D("2000"))
    book(usdc, "auction-1", {alice: D("-1500"), bob: D("1500")})

    def attempt(seconds):
        now = NOW + timedelta(seconds=seconds)
        sent = beat.submit(now=now)
        w3.testing.mine(3)
        beat.confirm(now=now)
        return len(sent)

    assert [attempt(0), attempt(29), attempt(30), attempt(89), attempt(90)] == [1, 0, 1, 0, 1]
    assert SettlementBatch.objects.filter(state="failed").count() == 3
    alert = OperatorAlert.objects.get(resolved_at=None)
    assert alert.kind == "settlement_stuck" and "failed on chain 3 times" in alert.message
    assert attempt(209) == 0
    deposit(w3, token, fund_lock, alice, 1_000_000_000)  # the missing funds arrive on chain
    assert attempt(210) == 1
    assert SettlementBatch.objects.filter(state="confirmed").count() == 1
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + timedelta(seconds=210)
    assert client.balance(token.address, alice) == 500_000_000


def test_a_batch_unconfirmed_past_the_limit_raises_an_alert(funded, beat, settings):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    settings.CCP_SETTLEMENT_ALERT_AFTER = timedelta(minutes=10)
    balance = w3.eth.get_balance(operator.address)  # the operator account runs out of gas funds
    w3.eth.send_raw_transaction(operator.sign_transaction({
        "to": house, "value": balance - 21_000 * w3.eth.gas_price, "gas": 21_000, "gasPrice": w3.eth.gas_price,
        "nonce": client.nonce(operator.address), "chainId": w3.eth.chain_id}).raw_transaction)
    movements = book(usdc, "auction-1", {alice: D("-1"), bob: D("1")})
    beat.submit()
    beat.confirm(now=NOW + timedelta(minutes=9))
    assert not OperatorAlert.objects.exists()
    beat.confirm(now=NOW + timedelta(minutes=10))
    alert = OperatorAlert.objects.get(resolved_at=None)
    assert alert.kind == "settlement_stuck" and "not confirmed" in alert.message
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": operator.address, "value": 10**18})
    beat.confirm(now=NOW + timedelta(minutes=11))  # sent again
    w3.testing.mine(3)
    assert beat.confirm(now=NOW + timedelta(minutes=12))["confirmed"] == 1
    assert_settled_once(client, token, movements)
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_submit_run_sends_a_bounded_number_of_batches_in_booking_order(funded, beat, settings, monkeypatch):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    settings.CCP_SETTLEMENT_BATCHES_PER_RUN, settings.CCP_SETTLEMENT_IN_FLIGHT_MAX = 2, 3
    monkeypatch.setattr(services, "PENDING_PAGE", 2)  # origins read two at a time
    refs = ["auction-9", "auction-10", "auction-11", "auction-12", "auction-13"]
    movements = [m for k, ref in enumerate(refs, start=1) for m in book(usdc, ref, {alice: D(-k), bob: D(k)})]
    assert origins(beat.submit(send=False)) == ["auction-9", "auction-10"]
    assert origins(beat.submit(send=False)) == ["auction-11"]  # three in flight: no more
    assert beat.submit(send=False) == []
    assert beat.confirm()["resent"] == 3
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 3
    assert origins(beat.submit()) == ["auction-12", "auction-13"]
    w3.testing.mine(3)
    beat.confirm()
    assert_settled_once(client, token, movements)


def test_a_confirmed_batch_the_chain_lost_is_moved_back_and_settles_once(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    before = w3.testing.snapshot()
    movements = book(usdc, "auction-1", {alice: D("-250"), bob: D("250")})
    beat.submit()
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 1
    assert FundLock.objects.get(client__address=alice.lower()).fundlock == D("750")
    w3.testing.revert(before)  # a reorganisation deeper than the confirmations: the batch's block is gone,
    operator_send(w3, operator)  # and on the new branch another transaction has its nonce
    w3.testing.mine(5)
    counts = beat.confirm()
    assert counts["lost"] == 1 and counts["resigned"] == 1
    alert = OperatorAlert.objects.get(resolved_at=None)
    assert alert.kind == "chain_reorg" and "no longer applied on chain" in alert.message
    alice_lock = FundLock.objects.get(client__address=alice.lower())
    assert (alice_lock.fundlock, alice_lock.settle_value) == (D("1000"), D("-250"))  # back in settle value
    w3.testing.mine(3)
    assert beat.confirm()["confirmed"] == 1
    assert_settled_once(client, token, movements)
    assert OperatorNonce.objects.get().next_nonce == client.nonce(operator.address)


def test_a_replaced_transaction_mined_after_its_successor_failed_is_confirmed_not_sent_again(funded, beat):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    # The books hold 1000 more for alice than the chain does: the batch reverts until that arrives on chain.
    FundLock.objects.filter(client__address=alice.lower()).update(fundlock=D("2000"))
    book(usdc, "auction-1", {alice: D("-1500"), bob: D("1500")})
    gap = client.nonce(operator.address)
    OperatorNonce.objects.create(address=operator.address.lower(), next_nonce=gap + 1)  # a nonce nothing used
    [first] = beat.submit()  # behind the unused nonce: the node does not mine it
    later = NOW + timedelta(minutes=2)
    assert beat.confirm(now=later)["resigned"] == 1  # stuck behind a gap: re-signed into it
    w3.testing.mine(3)
    assert beat.confirm(now=later)["failed"] == 1  # the re-signed one reverted
    deposit(w3, token, fund_lock, alice, 1_000_000_000)
    client.send(services.SignedTx(first.tx_hash, bytes(first.raw_tx), first.nonce))  # the node still had the first
    assert client.receipt(first.tx_hash)["status"] == 1
    w3.testing.mine(3)
    assert beat.submit(now=later + timedelta(seconds=30)) == [first]  # its batch again, not a new transaction
    assert beat.confirm(now=later + timedelta(seconds=30))["confirmed"] == 1
    assert CashMovementTracking.objects.filter(state="confirmed").count() == 2
    assert len(fund_lock.events.BatchSettled.get_logs(from_block=0, to_block="latest")) == 1
    assert client.balance(token.address, alice) == 500_000_000
    assert not OperatorAlert.objects.filter(resolved_at=None).exists()


def test_a_resync_counts_a_batch_mined_after_it_read_the_chains_count(funded, beat):
    """A block arrives between the resync's read of the mined count and its read of the receipts: the
    batch it mined has a receipt and is not waiting, and its nonce is taken all the same."""
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = funded
    book(usdc, "auction-1", {alice: D("-1"), bob: D("1")})
    [batch] = beat.submit()
    assert client.receipt(batch.tx_hash) is not None  # mined in the latest block, not yet confirmed

    class OneBlockBehind(type(client)):
        def nonce(self, address: str) -> int:  # the count as it was before the latest block
            return self.w3.eth.get_transaction_count(w3.to_checksum_address(address), self.head() - 1)

    behind = copy.copy(client)
    behind.__class__ = OneBlockBehind
    assert behind.nonce(operator.address) == batch.nonce
    assert services.operator_nonce_resync(chain=behind, operator=operator, house=house, now=NOW) == 0
    assert OperatorNonce.objects.get().next_nonce == client.nonce(operator.address) == batch.nonce + 1
