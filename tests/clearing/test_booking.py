"""The booking service (``ccp.clearing.booking``): booking the same trades twice has one effect, and
over a scripted day with an expiry every trader's realised + unrealised PnL equals its cash movements
plus its position valued at the mark, and at expiry its realised PnL is exactly its cash."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import transaction
from django.db.models import Sum

from ccp.accounts.models import FundLock
from ccp.clearing.booking import trades_clear
from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution
from ccp.contracts.models import Contract
from ccp.contracts.payoffs import Leg, premium_per_unit
from ccp.contracts.services import expiry_settle
from ccp.locks import contracts_lock, orders_lock
from ccp.matching.models import Auction
from ccp.orders.models import Order
from ccp.risk.lockups import lockups_required
from ccp.risk.models import Lockup, Position
from ccp.risk.positions import PositionState, unrealised_pnl
from ccp.settlement.models import CashMovement
from ccp.system.invariants import invariants_check
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.matching.test_auction_flow import chains_started, place, run_auction  # noqa: F401

pytestmark = pytest.mark.django_db


def snapshot():
    return (list(Trade.objects.values_list("id", "quantity")),
            list(Order.objects.order_by("id").values_list("id", "state", "filled_quantity", "order_value")),
            list(Position.objects.order_by("id").values_list("id", "quantity", "entry_price", "realised_pnl")),
            list(CashMovement.objects.order_by("id").values_list("id", "amount")),
            list(FundLock.objects.order_by("id").values_list("id", "settle_value", "order_value", "lockup_value")),
            list(Lockup.objects.order_by("id").values_list("id", "amount")))


def clear(executions, cancels=None):
    with transaction.atomic():
        ids = {e.buy_order_id for e in executions} | {e.sell_order_id for e in executions} | set(cancels or {})
        # the lock order of ccp.locks: contracts, then orders
        contracts = contracts_lock(Contract.objects.filter(
            pk__in=Order.objects.filter(pk__in=ids).values("contract_id")))
        orders = {o.pk: o for o in orders_lock(Order.objects.filter(pk__in=ids))}
        for order in orders.values():
            order.contract = contracts[order.contract_id]
        return trades_clear(venue=Venue.AUCTION, venue_ref="auction-test", executions=executions, orders=orders,
                            contracts=contracts, cancels=cancels or {}, now=NOW, envelope={"type": "test"})


def test_booking_the_same_trades_twice_has_one_effect():
    contract = ContractFactory()
    alice, bob = (FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client for _ in range(2))
    buy = place(alice, contract, "buy", "2100", "0.5")
    sell = place(bob, contract, "sell", "2000", "0.5")
    executions = [Execution(contract.pk, D("2050"), D("0.3"), buy.pk, alice.pk, sell.pk, bob.pk)]
    first = clear(executions)
    after_first = snapshot()
    assert len(first.trades) == 1 and first.filled == {buy.pk: D("0.3"), sell.pk: D("0.3")}
    again = clear(executions)
    assert again.trades == [] and again.filled == {}
    assert snapshot() == after_first
    position = Position.objects.get(client=alice, contract=contract)
    assert (position.quantity, position.cost, position.entry_price, position.realised_pnl) == (
        D("0.3"), D("615"), D("2050"), D("0"))
    assert invariants_check().ok


def test_a_cancel_in_a_booking_releases_what_the_order_held():
    contract = ContractFactory()
    alice, bob = (FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client for _ in range(2))
    buy = place(alice, contract, "buy", "2100", "0.5")
    sell = place(bob, contract, "sell", "2000", "0.5")
    clear([Execution(contract.pk, D("2050"), D("0.2"), buy.pk, alice.pk, sell.pk, bob.pk)],
          cancels={buy.pk: "ioc_remainder"})
    buy.refresh_from_db()
    assert (buy.state, buy.filled_quantity, buy.order_value) == ("cancelled", D("0.2"), D("0"))
    assert list(buy.history.values_list("to_state", "reason"))[-2:] == [
        ("partially_filled", "auction"), ("cancelled", "ioc_remainder")]
    assert FundLock.objects.get(client=alice).order_value == 0
    assert invariants_check().ok


def pnl_matches_cash(clients, contract, mark):
    """realised + unrealised at ``mark`` == cash movements + quantity x premium(mark), per client."""
    for client in clients:
        position = Position.objects.get(client=client, contract=contract)
        cash = CashMovement.objects.filter(client=client, contract=contract).aggregate(s=Sum("amount"))["s"] or 0
        state = PositionState(position.quantity, position.cost, position.realised_pnl)
        assert position.realised_pnl + unrealised_pnl(contract.terms, state, mark) == \
            cash + position.quantity * premium_per_unit(contract.terms, mark)


def test_realised_and_unrealised_pnl_over_a_scripted_day_with_an_expiry(api_as):
    future = ContractFactory(kind="future", strike_px=None)
    alice, bob, carol = (FundLockFactory(currency=future.collateral, fundlock=D("1000000")).client
                         for _ in range(3))
    # 1. alice buys 1 from bob at the middle of 100000..101000
    place(alice, future, "buy", "101000", "1")
    place(bob, future, "sell", "100000", "1")
    run_auction()
    alice_position = Position.objects.get(client=alice, contract=future)
    assert (alice_position.quantity, alice_position.entry_price) == (D("1"), D("100500"))
    pnl_matches_cash((alice, bob), future, D("102000"))
    # 2. alice sells 0.4 to carol at 101500: realises 0.4 x 1000; then adds 0.2 from bob at 99500
    Auction.objects.update(slot=NOW.replace(year=2020))
    place(alice, future, "sell", "101500", "0.4")
    place(carol, future, "buy", "101500", "0.4")
    run_auction()
    Auction.objects.filter(slot__year=NOW.year).update(slot=NOW.replace(year=2019))
    place(alice, future, "buy", "99500", "0.2")
    place(bob, future, "sell", "99500", "0.2")
    run_auction()
    alice_position.refresh_from_db()
    assert alice_position.quantity == D("0.8")
    assert alice_position.realised_pnl == D("400")
    assert alice_position.entry_price == (D("0.6") * D("100500") + D("0.2") * D("99500")) / D("0.8") == D("100250")
    for mark in (D("50000"), D("99000"), D("100250"), D("150000")):
        pnl_matches_cash((alice, bob, carol), future, mark)
    # the API shows them (no fresh index in this test: no mark, no unrealised PnL)
    rows = api_as(alice).get("/api/v1/positions").json()["results"]
    assert [(r["contract"], r["quantity"], r["entry_price"], r["realised_pnl"], r["mark_price"]) for r in rows] == [
        (future.symbol, "0.8", "100250", "400", None)]
    # 3. expiry at 103000: every position closes, realised PnL is exactly each trader's cash
    Contract.objects.filter(pk=future.pk).update(state="expired")
    expiry_settle(pair=future.pair, expiry_date=future.expiry_date, settlement_px=D("103000"),
                  now=NOW + timedelta(days=1))
    realised = {}
    for client in (alice, bob, carol):
        position = Position.objects.get(client=client, contract=future)
        cash = CashMovement.objects.filter(client=client, contract=future).aggregate(s=Sum("amount"))["s"]
        assert (position.quantity, position.cost, position.entry_price, position.realised_pnl) == (0, 0, None, cash)
        realised[client.pk] = position.realised_pnl
    assert realised[alice.pk] == D("400") + D("0.8") * (D("103000") - D("100250"))
    assert sum(realised.values()) == 0
    assert not Lockup.objects.exclude(amount=0).exists()
    assert invariants_check().ok


def test_lockups_required_rounds_up_to_storage_precision():
    # short 1e-18 of a call paying at most 49999.5 needs 4.99995e-14: one digit too many, rounded up
    call = ContractFactory(strike_px=D("100000.5"))
    amounts = lockups_required({"short": [Leg(call.terms, D("-0.000000000000000001"))]})
    assert amounts == {"short": D("0.000000000000050000")}
