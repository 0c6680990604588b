"""Auctions in the database: snapshot, solve, apply; conservation, limits, collateral, idempotency, replay."""

import hashlib
import json
from decimal import Decimal as D
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from ccp.accounts.models import FundLock
from ccp.clock import utcnow
from ccp.matching.auction import canonical_json, document_hash
from ccp.matching.models import Auction
from ccp.matching.tasks import auction_apply_task, auction_close_task, auction_solve_task, auctions_start_task
from ccp.orders.services import order_cancel, order_validate
from ccp.prices.models import ReferencePrice
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def chains_started(monkeypatch) -> list[int]:
    """Stand-in for the broker: the auction chains beat starts are recorded here, and each test runs
    the stages itself (a chain queued on the test Redis would outlive the test, and a later test's
    worker would run it)."""
    started: list[int] = []

    class Recorder:
        def __init__(self, auction_id: int) -> None:
            self.auction_id = auction_id

        def apply_async(self) -> None:
            started.append(self.auction_id)

    monkeypatch.setattr("ccp.matching.tasks.auction_chain", Recorder)
    return started


@pytest.fixture
def market():
    """A call (strike 100000, bounds [50000, 150000], tick 1, lot 0.01) and three funded traders."""
    contract = ContractFactory()
    traders = [FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client for _ in range(3)]
    return contract, traders


def place(client, contract, side, price, quantity):
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity))
    order_validate(order_id=order.pk, now=NOW)
    order.refresh_from_db()
    assert order.state == "accepted"
    return order


def run_auction(twice: bool = True) -> Auction:
    with time_machine.travel(NOW, tick=False):
        started = auctions_start_task.apply().get()
        assert auctions_start_task.apply().get() == []  # same slot, or the first still running: no second one
    (auction_id,) = started
    for task in (auction_close_task, auction_solve_task, auction_apply_task):
        for _ in range(2 if twice else 1):
            task.apply(args=[auction_id]).get()
    return Auction.objects.get(pk=auction_id)


def test_an_auction_conserves_cash_and_positions_and_respects_limits(market):
    contract, (alice, bob, carol) = market
    buy = place(alice, contract, "buy", "2100", "0.5")
    sell = place(bob, contract, "sell", "2000", "0.3")
    place(carol, contract, "sell", "1900", "0.1")
    place(carol, contract, "sell", "2200", "0.4")  # above every bid: stays open

    auction = run_auction()

    assert auction.state == "applied" and auction.status == "optimal"
    movements = CashMovement.objects.filter(origin="auction", origin_ref=auction.ref)
    assert sum(m.amount for m in movements) == 0
    assert sum(p.quantity for p in Position.objects.filter(contract=contract)) == 0
    price = D(auction.result_document["prices"][contract.symbol])
    assert D("2000") <= price <= D("2100")
    buy.refresh_from_db()
    sell.refresh_from_db()
    assert (buy.state, buy.filled_quantity) == ("partially_filled", D("0.4"))
    assert (sell.state, sell.filled_quantity, sell.order_value) == ("filled", D("0.3"), 0)
    # alice paid the clearing price, not her limit; her remaining 0.1 still holds its order value
    alice_lock = FundLock.objects.get(client=alice)
    assert alice_lock.settle_value == -price * D("0.4")
    assert alice_lock.order_value == D("2100") * D("0.1")
    # bob sold calls: his lockup is the worst case (cap - strike) x 0.3 = 15000
    assert Lockup.objects.get(client=bob).amount == D("15000")
    bob_lock = FundLock.objects.get(client=bob)
    assert (bob_lock.settle_value, bob_lock.lockup_value, bob_lock.order_value) == (price * D("0.3"), D("15000"), 0)
    for fund_lock in FundLock.objects.all():
        assert fund_lock.available >= 0
    assert ReferencePrice.objects.get(contract=contract, kind="clearing").price == price
    assert not Auction.objects.exclude(state="applied").exists()  # no order is held any more


def test_a_duplicated_auction_has_one_effect(market):
    contract, (alice, bob, _) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "sell", "2000", "0.5")
    auction = run_auction(twice=True)
    assert CashMovement.objects.filter(origin_ref=auction.ref).count() == 2
    assert Position.objects.get(client=alice).quantity == D("0.5")
    assert Auction.objects.count() == 1


def test_netting_frees_collateral(market):
    contract, (alice, bob, _) = market
    place(alice, contract, "sell", "2000", "1")  # short one call: lockup 50000
    place(bob, contract, "buy", "2000", "1")
    run_auction()
    assert Lockup.objects.get(client=alice).amount == D("50000")
    place(alice, contract, "buy", "2000", "1")  # buying it back closes the position
    place(bob, contract, "sell", "2000", "1")
    with time_machine.travel(NOW, tick=False):
        Auction.objects.update(slot=utcnow().replace(year=2020))
    run_auction()
    assert Lockup.objects.get(client=alice).amount == 0
    assert FundLock.objects.get(client=alice).lockup_value == 0


def test_a_cancel_during_an_auction_takes_the_remainder_after_it(market):
    contract, (alice, bob, _) = market
    buy = place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "sell", "2000", "0.2")
    with time_machine.travel(NOW, tick=False):
        (auction_id,) = auctions_start_task.apply().get()
    auction_close_task.apply(args=[auction_id]).get()
    held = order_cancel(client=alice, order_id=buy.pk, now=NOW)
    assert held.state == "accepted" and held.cancel_requested_at is not None
    auction_solve_task.apply(args=[auction_id]).get()
    auction_apply_task.apply(args=[auction_id]).get()
    buy.refresh_from_db()
    assert (buy.state, buy.filled_quantity, buy.order_value) == ("cancelled", D("0.2"), 0)
    assert list(buy.history.values_list("to_state", flat=True)) == ["accepted", "partially_filled", "cancelled"]
    assert FundLock.objects.get(client=alice).order_value == 0


def test_orders_arriving_during_an_auction_wait_for_the_next(market):
    contract, (alice, bob, _) = market
    place(alice, contract, "buy", "2100", "0.5")
    with time_machine.travel(NOW, tick=False):
        (auction_id,) = auctions_start_task.apply().get()
    auction_close_task.apply(args=[auction_id]).get()
    late = place(bob, contract, "sell", "2000", "0.5")
    auction_solve_task.apply(args=[auction_id]).get()
    auction_apply_task.apply(args=[auction_id]).get()
    late.refresh_from_db()
    assert late.filled_quantity == 0 and Auction.objects.get(pk=auction_id).fills_count == 0


def test_replay_reproduces_a_stored_auction_exactly(market, tmp_path):
    contract, (alice, bob, carol) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "sell", "2000", "0.3")
    place(carol, contract, "sell", "1950", "0.4")
    auction = run_auction(twice=False)
    out = StringIO()
    call_command("auction_replay", auction=auction.pk, stdout=out)
    replayed = json.loads(out.getvalue())
    assert replayed.pop("input_hash") == auction.input_hash == document_hash(auction.input_document)
    with connection.cursor() as cursor:  # the database keeps the very text that was hashed
        cursor.execute("SELECT input_document::text FROM matching_auction WHERE id = %s", [auction.pk])
        assert cursor.fetchone()[0] == canonical_json(auction.input_document)
    assert replayed == auction.result_document
    # the same from a file, as a third party would run it
    path = tmp_path / "input.json"
    path.write_text(json.dumps(auction.input_document))
    out = StringIO()
    call_command("auction_replay", str(path), stdout=out)
    assert json.loads(out.getvalue())["fills"] == auction.result_document["fills"]


def test_the_webconsole_shows_an_auction_with_its_charts_and_documents(market, admin_client):
    contract, (alice, bob, _) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "sell", "2000", "0.3")
    auction = run_auction(twice=False)
    page = admin_client.get(f"/admin/matching/auction/{auction.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    price = auction.result_document["prices"][contract.symbol]
    assert price == "2100"  # excess demand at the bid: the price goes to the top of the range
    assert "<svg" in body and contract.symbol in body and "price 2100.000000000000000000" not in body
    assert "price 2100, volume 0.3" in body
    listing = admin_client.get("/admin/matching/auction/")
    assert listing.status_code == 200 and auction.result_document["gap"] in listing.content.decode()
    document = admin_client.get(f"/admin/matching/auction/{auction.pk}/input.json")
    assert document.status_code == 200 and document.json()["format"] == "ccp-auction-input/1"
    assert hashlib.sha256(document.content).hexdigest() == auction.input_hash  # anyone can check the file


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "cannot read"),
    ('{"format": "something-else"}', "invalid input document"),
    ('{"format": "ccp-auction-input/1", "contracts": [], "clients": [], "orders": [{"id": "1"}]}',
     "invalid input document"),
])
def test_replay_refuses_a_bad_hand_written_document_clearly(tmp_path, text, problem):
    from django.core.management.base import CommandError

    path = tmp_path / "input.json"
    path.write_text(text)
    with pytest.raises(CommandError, match=problem):
        call_command("auction_replay", str(path), stdout=StringIO())
    with pytest.raises(CommandError, match="no input document"):
        call_command("auction_replay", auction=987654, stdout=StringIO())
