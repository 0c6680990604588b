"""The reconciliation keeps what the contract held for each fund lock, so the webconsole shows the
on-chain balance and the drift beside the backend's figure."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.settlement.models import ChainBalance
from ccp.settlement.services import deposits_monitor, reconciliation_run
from tests.conftest import NOW
from tests.settlement.evm import deposit

pytestmark = pytest.mark.django_db


def test_the_reconciliation_stores_the_balance_it_saw_and_the_drift(chain):
    """Given 5 USDC deposited and credited; when the books drift to 6 and the reconciliation runs twice;
    then one row per fund lock holds the contract's 5, the 6 it was compared with, the block and time
    of the last run."""
    w3, token, fund_lock, client, *_ = chain
    alice = chain[6][0]
    deposit(w3, token, fund_lock, alice, 5_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    reconciliation_run(chain=client, now=NOW)
    fund = FundLock.objects.get(client__address=alice.lower())
    seen = ChainBalance.objects.get(fund_lock=fund)
    assert (seen.balance, seen.fundlock, seen.difference, seen.seen_at) == (D(5), D(5), D(0), NOW)

    FundLock.objects.filter(pk=fund.pk).update(fundlock=D(6))  # the books drift
    later = NOW + timedelta(minutes=5)
    w3.testing.mine(2)
    deposits_monitor(chain=client, now=later)
    assert len(reconciliation_run(chain=client, now=later)) == 1
    reconciliation_run(chain=client, now=later)  # a second run changes nothing more

    seen = ChainBalance.objects.get(fund_lock=fund)
    assert (seen.balance, seen.fundlock, seen.difference, seen.seen_at) == (D(5), D(6), D(-1), later)
    assert seen.block_number == client.head() - 3
    assert ChainBalance.objects.count() == 1
