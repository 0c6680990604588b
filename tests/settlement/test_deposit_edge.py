"""The deposit edge after the chain changed under it: the monitor alerts at once when the node lost the
edge's block (and does not crash), and an operator moves the edge back, in a service or the webconsole,
to read blocks again: deposits are keyed by (transaction hash, log index), so nothing is credited twice."""

from decimal import Decimal as D

import pytest
from django.urls import reverse

from ccp.accounts.models import FundLock
from ccp.errors import ApplicationError
from ccp.settlement.models import Deposit
from ccp.settlement.services import DEPOSITS_EDGE, deposits_monitor
from ccp.system.models import Edge, OperatorAlert
from ccp.system.services import edge_rewind
from tests.conftest import NOW
from tests.settlement.evm import deposit

pytestmark = pytest.mark.django_db


def test_the_monitor_alerts_at_once_when_the_node_lost_the_edges_block(chain):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    before, start = w3.testing.snapshot(), w3.eth.block_number
    deposit(w3, token, fund_lock, alice, 1_000_000)
    w3.testing.mine(5)
    assert deposits_monitor(chain=client, now=NOW) == 1
    w3.testing.revert(before)  # the node restarted with less state: the edge's block is gone
    assert deposits_monitor(chain=client, now=NOW) == 0
    alert = OperatorAlert.objects.get(resolved_at=None)
    assert alert.kind == "chain_reorg" and "is gone" in alert.message and "move the edge back" in alert.message
    # The operator follows the advice; the monitor reads the new blocks and the alert closes.
    edge_rewind(name=DEPOSITS_EDGE, block_number=start, now=NOW)
    deposit(w3, token, fund_lock, bob, 2_000_000)
    w3.testing.mine(3)
    assert deposits_monitor(chain=client, now=NOW) == 1
    alert.refresh_from_db()
    assert alert.resolved_at == NOW
    assert FundLock.objects.get(client__address=bob.lower()).fundlock == D("2")


def test_moving_the_edge_back_reads_again_and_credits_nothing_twice(chain):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    deposit(w3, token, fund_lock, alice, 5_000_000)
    deposit(w3, token, fund_lock, bob, 7_000_000)
    w3.testing.mine(3)
    assert deposits_monitor(chain=client, now=NOW) == 2
    top = Edge.objects.get(name=DEPOSITS_EDGE).block_number
    assert edge_rewind(name=DEPOSITS_EDGE, block_number=0, now=NOW).block_number == 0
    assert deposits_monitor(chain=client, now=NOW) == 0
    assert Edge.objects.get(name=DEPOSITS_EDGE).block_number == top
    assert Deposit.objects.count() == 2
    assert {f.client.address: f.fundlock for f in FundLock.objects.select_related("client")} == {
        alice.lower(): D("5"), bob.lower(): D("7")}
    with pytest.raises(ApplicationError) as forward:
        edge_rewind(name=DEPOSITS_EDGE, block_number=top + 1, now=NOW)
    assert forward.value.code == "edge_not_back"
    assert Edge.objects.get(name=DEPOSITS_EDGE).block_number == top


def test_an_operator_moves_the_deposit_edge_back_in_the_webconsole(chain, admin_client):
    w3, token, fund_lock, client, _, usdc, (alice, bob), _ = chain
    deposit(w3, token, fund_lock, alice, 5_000_000)
    w3.testing.mine(3)
    deposits_monitor(chain=client, now=NOW)
    edge = Edge.objects.get(name=DEPOSITS_EDGE)
    url = reverse("admin:system_edge_changelist")
    chosen = {"action": "rewind", "_selected_action": [edge.pk]}
    page = admin_client.post(url, chosen)
    assert page.status_code == 200 and b"Move the edge back" in page.content
    both = admin_client.post(url, {**chosen, "apply": "1", "block_number": "1", "blocks_back": "2"})
    assert b"Give either a block or a number of blocks back." in both.content
    forward = admin_client.post(url, {**chosen, "apply": "1", "block_number": str(edge.block_number + 1)})
    assert b"can only move back" in forward.content
    assert Edge.objects.get(pk=edge.pk).block_number == edge.block_number
    done = admin_client.post(url, {**chosen, "apply": "1", "blocks_back": "3"}, follow=True)
    assert done.status_code == 200 and b"moved back to block" in done.content
    assert Edge.objects.get(pk=edge.pk).block_number == edge.block_number - 3
    assert deposits_monitor(chain=client, now=NOW) == 0
    assert FundLock.objects.get(client__address=alice.lower()).fundlock == D("5")
