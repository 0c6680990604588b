"""Deposits and settlement against a real EVM (py-evm through eth-tester): the FundLock contract as
deployed from its committed artifact, the backend's monitor and settlement services on top."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.settlement.models import CashMovement, CashMovementTracking, Deposit, SettlementBatch
from ccp.settlement.services import deposits_monitor, reconciliation_run
from ccp.system.models import OperatorAlert
from tests.conftest import NOW
from tests.factories import ContractFactory
from tests.settlement.evm import GAS, deposit

pytestmark = pytest.mark.django_db


def test_confirmed_deposits_register_clients_once(chain):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    deposit(w3, token, fund_lock, alice, 1_000_000_000)  # 1000 USDC
    assert deposits_monitor(chain=client, now=NOW) == 0  # not yet 3 blocks deep
    w3.testing.mine(3)
    assert deposits_monitor(chain=client, now=NOW) == 1
    assert deposits_monitor(chain=client, now=NOW) == 0
    fund = FundLock.objects.get(client__address=alice.lower(), currency=usdc)
    assert fund.fundlock == D("1000") and Deposit.objects.count() == 1


def test_a_reorg_deeper_than_the_confirmations_stops_the_monitor_with_an_alert(chain):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    before = w3.testing.snapshot()
    deposit(w3, token, fund_lock, alice, 1_000_000)
    w3.testing.mine(5)
    deposits_monitor(chain=client, now=NOW)
    w3.testing.revert(before)  # the chain forgets those blocks and grows another branch
    deposit(w3, token, fund_lock, bob, 2_000_000)
    w3.testing.mine(6)
    assert deposits_monitor(chain=client, now=NOW) == 0
    assert OperatorAlert.objects.get(resolved_at__isnull=True).kind == "chain_reorg"
    assert list(Deposit.objects.values_list("client__address", flat=True)) == [alice.lower()]


def test_cash_movements_settle_once_and_balances_on_chain_equal_fund_locks(chain, settle_all):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    for who in (alice, bob):
        deposit(w3, token, fund_lock, who, 1_000_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    locks = {f.client.address: f for f in FundLock.objects.select_related("client")}
    for who, amount in ((alice, D("-125.5")), (bob, D("125.5"))):  # an auction's premiums
        CashMovement.objects.create(client=locks[who.lower()].client, currency=usdc, amount=amount,
                                    origin="auction", origin_ref="auction-1", created_at=NOW)
        FundLock.objects.filter(pk=locks[who.lower()].pk).update(settle_value=amount)
    assert len(settle_all(w3, client, operator, house)) == 1
    assert settle_all(w3, client, operator, house) == []  # nothing left: the second run sends nothing
    for fund in FundLock.objects.select_related("client"):
        assert fund.settle_value == 0
        assert client.balance(token.address, fund.client.address) == int(fund.fundlock * 10**6)
    assert FundLock.objects.get(client__address=alice.lower()).fundlock == D("874.5")
    assert set(CashMovementTracking.objects.values_list("state", flat=True)) == {"confirmed"}


def test_a_large_origin_is_split_with_the_house_balancing_each_batch(chain, settle_all):
    w3, token, fund_lock, client, operator, usdc, accounts, house = chain
    traders = [w3.eth.accounts[k] for k in range(1, 6)]
    for who in traders:
        deposit(w3, token, fund_lock, who, 100_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    amounts = [D("-40"), D("-30"), D("10"), D("25"), D("35")]
    for who, amount in zip(traders, amounts, strict=True):
        fund = FundLock.objects.get(client__address=who.lower())
        CashMovement.objects.create(client=fund.client, currency=usdc, amount=amount, origin="expiry",
                                    origin_ref="expiry-x", created_at=NOW)
        FundLock.objects.filter(pk=fund.pk).update(settle_value=amount)
    batches = settle_all(w3, client, operator, house, batch_max=3)
    assert len(batches) == 3 and {b.state for b in SettlementBatch.objects.all()} == {"confirmed"}
    assert client.balance(token.address, house) == 0
    for fund in FundLock.objects.select_related("client"):
        assert client.balance(token.address, fund.client.address) == int(fund.fundlock * 10**6)


def test_a_failed_batch_is_sent_again_under_the_same_batch_id(chain, settle_all):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    deposit(w3, token, fund_lock, alice, 1_000_000)
    deposit(w3, token, fund_lock, bob, 1_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    for who, amount in ((alice, D("-5")), (bob, D("5"))):  # alice holds only 1 USDC on chain: it reverts
        fund = FundLock.objects.get(client__address=who.lower())
        CashMovement.objects.create(client=fund.client, currency=usdc, amount=amount, origin="auction",
                                    origin_ref="auction-9", created_at=NOW)
    first = settle_all(w3, client, operator, house)
    assert settle_all(w3, client, operator, house) == []  # it waits before it is sent again
    second = settle_all(w3, client, operator, house, now=NOW + timedelta(seconds=30))
    assert [b.state for b in SettlementBatch.objects.order_by("id")] == ["failed", "failed"]
    assert first[0].batch_id == second[0].batch_id and first[0].nonce + 1 == second[0].nonce
    assert FundLock.objects.get(client__address=alice.lower()).fundlock == D("1")


def test_withdrawals_take_only_available_collateral_and_release_it_on_chain(chain, settle_all, api_as):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    deposit(w3, token, fund_lock, alice, 1_000_000_000)  # 1000 USDC
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    fund = FundLock.objects.get(client__address=alice.lower())
    FundLock.objects.filter(pk=fund.pk).update(order_value=D("700"))  # open orders hold 700
    api = api_as(fund.client)
    refused = api.post("/api/v1/withdrawals", {"client_withdrawal_id": "w-big", "currency": "USDC",
                                               "amount": "300.000001"}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_collateral"
    assert not CashMovement.objects.exists()
    for bad, code in (({"currency": "USDC", "amount": "0"}, "withdrawal_not_positive"),
                      ({"currency": "USDC", "amount": "1.0000001"}, "amount_too_precise"),
                      ({"currency": "XYZ", "amount": "1"}, "unknown_currency")):
        response = api.post("/api/v1/withdrawals", {"client_withdrawal_id": f"w-{code}", **bad}, format="json")
        assert response.json()["code"] == code
    accepted = api.post("/api/v1/withdrawals", {"client_withdrawal_id": "w-1", "currency": "USDC", "amount": "300"},
                        format="json")
    assert accepted.status_code == 201 and accepted.json()["state"] == "pending"
    assert FundLock.objects.get(pk=fund.pk).available == 0
    settle_all(w3, client, operator, house)
    assert api.get("/api/v1/withdrawals").json()["results"][0]["state"] == "released"
    fund.refresh_from_db()
    assert (fund.fundlock, fund.settle_value) == (D("700"), 0)
    # on chain: 300 withdrawable, 700 still locked; the client can take the 300 and nothing more
    assert fund_lock.functions.withdrawable(token.address, alice).call() == 300_000_000
    before = token.functions.balanceOf(alice).call()
    fund_lock.functions.withdraw(token.address, 300_000_000).transact({"from": alice, "gas": GAS})
    assert token.functions.balanceOf(alice).call() == before + 300_000_000
    # with an explicit gas limit a reverting transaction is mined with status 0
    again = fund_lock.functions.withdraw(token.address, 1).transact({"from": alice, "gas": GAS})
    assert w3.eth.wait_for_transaction_receipt(again).status == 0
    assert client.balance(token.address, alice) == 700_000_000


def test_reconciliation_shows_drift_between_fund_locks_and_the_contract(chain):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    deposit(w3, token, fund_lock, alice, 5_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    assert reconciliation_run(chain=client, now=NOW) == []
    FundLock.objects.filter(client__address=alice.lower()).update(fundlock=D("6"))  # the books drift
    assert len(reconciliation_run(chain=client, now=NOW)) == 1
    assert OperatorAlert.objects.get(resolved_at__isnull=True).kind == "reconciliation"
    FundLock.objects.filter(client__address=alice.lower()).update(fundlock=D("5"))
    assert reconciliation_run(chain=client, now=NOW) == []
    assert not OperatorAlert.objects.filter(resolved_at__isnull=True).exists()


def test_worthless_expiry_movements_are_not_sent_on_chain(chain, settle_all):
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    deposit(w3, token, fund_lock, alice, 1_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    fund = FundLock.objects.get(client__address=alice.lower())
    CashMovement.objects.create(client=fund.client, currency=usdc, amount=D(0), position_delta=D("-1"),
                                contract=ContractFactory(collateral=usdc), origin="expiry",
                                origin_ref="expiry-worthless", created_at=NOW)
    assert settle_all(w3, client, operator, house) == []
    assert not CashMovementTracking.objects.exists()


def test_a_websocket_node_url_is_refused_with_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    from ccp.settlement.chain.connect import web3_for

    with pytest.raises(ImproperlyConfigured, match="http"):
        web3_for("ws://127.0.0.1:8546")


def test_a_credited_deposit_pushes_the_clients_new_balance(chain, django_capture_on_commit_callbacks):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    deposit(w3, token, fund_lock, alice, 1_000_000_000)
    w3.testing.mine(3)
    with django_capture_on_commit_callbacks() as hooks:
        deposits_monitor(chain=client, now=NOW)
    fund = FundLock.objects.get(client__address=alice.lower())
    pushed = [(group, m["event"]["type"], m["event"]["balance"]["fundlock"])
              for hook in hooks for group, m in hook.__self__.messages]
    assert pushed == [(f"client.{fund.client_id}", "balance", "1000")]


@pytest.mark.parametrize("origin", ["book", "variation", "funding", "liquidation", "liquidation_fee"])
def test_every_venue_s_cash_movements_settle_on_chain(chain, settle_all, origin):
    # A trader's gain on the continuous book (or a perpetual's settlement, funding or liquidation) must reach
    # the chain, or it could never be withdrawn there.
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    for who in (alice, bob):
        deposit(w3, token, fund_lock, who, 1_000_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    locks = {f.client.address: f for f in FundLock.objects.select_related("client")}
    for who, amount in ((alice, D("-40.25")), (bob, D("40.25"))):
        CashMovement.objects.create(client=locks[who.lower()].client, currency=usdc, amount=amount,
                                    origin=origin, origin_ref=f"{origin}-1", created_at=NOW)
        FundLock.objects.filter(pk=locks[who.lower()].pk).update(settle_value=amount)
    assert len(settle_all(w3, client, operator, house)) == 1
    assert client.balance(token.address, bob) == 1_040_250_000
    assert FundLock.objects.get(client__address=bob.lower()).fundlock == D("1040.25")
