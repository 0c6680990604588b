"""``manage.py ccp_check``: a system booked by the real services passes; each invariant broken by a
raw UPDATE is named and makes the command exit 1."""

from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract
from ccp.contracts.services import expiry_settle
from ccp.matching.models import Auction
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.services import order_cancel, order_validate
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement, ChainContract
from ccp.settlement.services import (
    DEPOSITS_EDGE,
    WithdrawalAsk,
    deposits_monitor,
    settlement_submit,
    withdrawal_request,
)
from ccp.system.invariants import invariants_check
from ccp.system.models import Edge
from tests.conftest import NOW
from tests.factories import EXPIRY, ContractFactory, CurrencyFactory, FundLockFactory, ReceivedOrderFactory
from tests.processes import free_port
from tests.settlement.conftest import chain, settle_all  # noqa: F401 - fixtures
from tests.settlement.evm import deposit

pytestmark = pytest.mark.django_db


def place(client, contract, side, price, quantity, validate=True):
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity))
    if validate:
        order_validate(order_id=order.pk, now=NOW)
    return order


@pytest.fixture
def booked():
    """Three traders after an auction on a call and a future, the future's expiry settled, a cancelled
    order, an order still waiting for validation and a withdrawal: every kind of row the checks read."""
    call = ContractFactory()
    future = ContractFactory(kind="future", strike_px=None, expiry_date=EXPIRY - timedelta(days=7))
    usdc = call.collateral
    usdc.token_address = "0x" + "11" * 20
    usdc.save()
    alice, bob, carol = (FundLockFactory(currency=usdc, fundlock=D("1000000")).client for _ in range(3))
    place(alice, call, "buy", "2100", "0.5")
    place(bob, call, "sell", "2000", "0.3")
    place(carol, call, "sell", "1900", "0.1")
    place(carol, call, "sell", "2200", "0.4")  # above every bid: stays open
    place(alice, future, "buy", "101000", "0.2")
    place(bob, future, "sell", "100000", "0.2")
    order_cancel(client=carol, order_id=place(carol, call, "buy", "1000", "1").pk, now=NOW)
    place(bob, call, "buy", "1500", "1", validate=False)
    auction = auction_open(pair=call.pair, now=NOW, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=NOW, settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=NOW)
    assert auction_apply(auction_id=auction.pk, now=NOW).fills_count == 5
    Contract.objects.filter(pk=future.pk).update(state="expired")
    expiry_settle(pair=future.pair, expiry_date=future.expiry_date, settlement_px=D("103000"), now=NOW)
    withdrawal_request(client=carol, ask=WithdrawalAsk(client_withdrawal_id="w-1", currency=usdc, amount=D("10")),
                       now=NOW)
    return {"call": call, "future": future, "alice": alice, "bob": bob, "carol": carol, "auction": auction}


def ccp_check(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("ccp_check", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def test_a_system_booked_by_the_services_passes(booked):
    assert Lockup.objects.filter(amount__gt=0).exists() and CashMovement.objects.filter(origin="expiry").exists()
    code, output = ccp_check()
    assert code == 0, output
    assert output.startswith("ccp_check: 12 invariants hold (8 orders, 3 fund locks, ")
    assert output.strip().endswith("chain not checked") and len(output.strip().splitlines()) == 1


@pytest.mark.django_db(transaction=True)
def test_it_reads_one_snapshot_and_writes_nothing(booked):
    # given no caller's transaction (as from the command line), the checks run in a read-only snapshot
    with CaptureQueriesContext(connection) as queries:
        report = invariants_check()
    assert report.ok, report.violations
    assert [q["sql"] for q in queries[:2]] == ["BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        assert cursor.fetchone() == ("read committed",)  # back to the default after it


def _first(model, **filters) -> int:
    return model.objects.filter(**filters).order_by("id").values_list("id", flat=True)[0]


PLANTED = {
    # check name: the raw UPDATE that breaks it (format fields: ids found in the booked system)
    "movements_not_balanced": "UPDATE settlement_cashmovement SET amount = amount + 1 WHERE id = {auction_movement}",
    "positions_not_balanced": "UPDATE risk_position SET quantity = quantity + 0.01 WHERE id = {call_position}",
    "position_not_journaled": "UPDATE settlement_cashmovement SET position_delta = position_delta * 2 "
                              "WHERE id = {auction_movement}",
    "position_pnl_not_journaled": "UPDATE risk_position SET realised_pnl = realised_pnl + 1 WHERE id = {call_position}",
    "position_on_settled_contract": "UPDATE risk_position SET quantity = quantity + 0.1 WHERE id = {future_position}",
    "order_value_wrong": "UPDATE orders_order SET order_value = order_value + 1 WHERE id = {open_order}",
    "fund_lock_order_value_wrong": "UPDATE accounts_fundlock SET order_value = order_value + 1 WHERE client_id = "
                                   "{carol}",
    "lockup_wrong": "UPDATE risk_lockup SET amount = amount - 1 WHERE id = {lockup}",
    "fund_lock_lockups_wrong": "UPDATE accounts_fundlock SET lockup_value = lockup_value + 1 WHERE client_id = {bob}",
    "settle_value_wrong": "UPDATE accounts_fundlock SET settle_value = settle_value + 5 WHERE client_id = {carol}",
    # no perpetual position: every margin value must be 0
    "fund_lock_margin_wrong": "UPDATE accounts_fundlock SET margin_value = margin_value - 1 WHERE client_id = {bob}",
    # the database refuses this one itself: its constraint goes first (inside the test's transaction)
    "available_negative": "SET CONSTRAINTS ALL IMMEDIATE; "
                          "ALTER TABLE accounts_fundlock DROP CONSTRAINT fundlock_available_non_negative; "
                          "UPDATE accounts_fundlock SET fundlock = 0 WHERE client_id = {carol}",
}


@pytest.mark.parametrize("check", sorted(PLANTED))
def test_each_planted_violation_is_reported_and_exits_1(booked, check):
    ids = {"auction_movement": _first(CashMovement, origin="auction"),
           "call_position": _first(Position, contract=booked["call"]),
           "future_position": _first(Position, contract=booked["future"]),
           "open_order": _first(booked["call"].orders.model, state="accepted", client=booked["carol"]),
           "lockup": _first(Lockup, client=booked["bob"], amount__gt=0),
           "bob": booked["bob"].pk, "carol": booked["carol"].pk}
    with connection.cursor() as cursor:
        cursor.execute(PLANTED[check].format(**ids))
    code, output = ccp_check()
    assert code == 1
    assert f"VIOLATION {check}: " in output
    assert "violations of 12 invariants" in output.splitlines()[-1]


def test_an_order_value_for_another_quantity_is_named_with_what_it_should_be(booked):
    # given an open sell of 0.4 at 2200 whose book now says 0.1 of it filled
    order_id = _first(booked["call"].orders.model, state="accepted", client=booked["carol"])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE orders_order SET filled_quantity = 0.1, state = 'partially_filled' WHERE id = %s",
                       [order_id])
    violations = invariants_check().violations
    assert [v.check for v in violations] == ["order_value_wrong"]
    # an auction order's stored (netted) hold may be less than its stand-alone worst case, never more
    assert f"order {order_id}: order value 19120, at most 14340 (sell 0.3 left at 2200)" in violations[0].message


def test_the_chain_agrees_after_settlement_and_a_drift_or_a_lost_batch_is_reported(
        chain, settle_all, django_capture_on_commit_callbacks):  # noqa: F811
    w3, token, fund_lock, client, operator, usdc, (alice, bob), house = chain
    for who in (alice, bob):
        deposit(w3, token, fund_lock, who, 1_000_000_000)
    w3.testing.mine(3)
    _monitor(client)
    locks = {f.client.address: f for f in FundLock.objects.select_related("client")}
    for who, amount in ((alice, D("-125.5")), (bob, D("125.5"))):
        CashMovement.objects.create(client=locks[who.lower()].client, currency=usdc, amount=amount,
                                    origin="auction", origin_ref="auction-1", created_at=NOW)
        FundLock.objects.filter(pk=locks[who.lower()].pk).update(settle_value=amount)
    # while the batch is in flight (mined, not yet confirmed here), its clients are not compared
    with django_capture_on_commit_callbacks(execute=True):
        settlement_submit(chain=client, operator=operator, house=house, now=NOW)
    w3.testing.mine(3)
    _monitor(client)
    report = invariants_check(chain=client)
    assert report.ok and report.counts["fund locks on chain"] == 0, report.violations
    settle_all(w3, client, operator, house)
    _monitor(client)
    report = invariants_check(chain=client)
    assert report.ok, report.violations
    assert (report.counts["fund locks on chain"], report.counts["confirmed batches"]) == (2, 1)
    # when the database drifts from the chain, or holds a batch confirmed that the chain never applied
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_fundlock SET fundlock = fundlock + 1 WHERE client_id = %s",
                       [locks[alice.lower()].client_id])
        cursor.execute("UPDATE settlement_settlementbatch SET batch_id = %s", ["0x" + "ab" * 32])
    violations = invariants_check(chain=client).violations
    assert [v.check for v in violations] == ["fund_lock_differs_from_chain", "confirmed_batch_not_applied"]
    assert "fundlock 875.5, the contract holds 874.5" in violations[0].message


def _monitor(client):
    deposits_monitor(chain=client, now=NOW)


def test_an_auction_still_running_is_not_a_violation(booked):
    # given an auction that closed (it holds orders) but is not applied yet
    carol, call = booked["carol"], booked["call"]
    place(carol, call, "buy", "2300", "0.1")
    auction = auction_open(pair=call.pair, now=NOW + timedelta(seconds=10), interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=NOW, settings=auction_settings())
    assert Auction.objects.get(pk=auction.pk).state == "closed"
    assert invariants_check().ok


def test_a_chain_that_does_not_answer_is_exit_2_not_a_violation(settings, now):
    settings.CCP_CHAIN_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ChainContract.objects.create(name="FundLock", address="0x" + "22" * 20, chain_id=31337, deployed_block=0,
                                 created_at=now)
    Edge.objects.create(name=DEPOSITS_EDGE, block_number=5, updated_at=now)
    FundLockFactory(currency=CurrencyFactory(symbol="USDC", decimals=6, token_address="0x" + "33" * 20))
    code, output = ccp_check()
    assert code == 2 and "could not read the chain" in output
    assert ccp_check("--no-chain")[0] == 0
