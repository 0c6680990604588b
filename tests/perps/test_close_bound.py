"""An order that reduces a perpetual position never trades beyond the price at which its loss would take the
client's available collateral below zero (``ccp.perps.margin.close_bound``): the matcher protects a market or
immediate order there and refuses a resting limit beyond it, where the fill would otherwise break the database's
rule and fail the whole batch for every trader of the contract."""

from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.perps.fund import insurance_fund_client
from ccp.perps.margin import close_bound
from ccp.perps.models import MarkPrice, Perpetual
from ccp.perps.services import funding_time, perpetual_liquidations_enter, perpetuals_fund
from ccp.settlement.models import CashMovement
from ccp.system.invariants import invariants_check
from ccp.system.models import OperatorAlert
from tests.book.test_venue import match, send, state, trader
from tests.perps.test_trading import balance, perp, position  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_the_bound_is_where_the_closed_part_s_loss_uses_up_the_free_collateral():
    # 0.1 long at 50,000 with 500 of margin and nothing free: all of it sells down to 45,000; half of it down to
    # 50,000 - 250 / 0.05 = 45,000 too; with 100 free, to 50,000 - 600 / 0.1 = 44,000. A short the other way.
    assert close_bound(quantity=D("0.1"), cost=D(5000), margin=D(500), free=D(0), closing=D("0.1")) == D(45000)
    assert close_bound(quantity=D("0.1"), cost=D(5000), margin=D(500), free=D(0), closing=D("0.05")) == D(45000)
    assert close_bound(quantity=D("0.1"), cost=D(5000), margin=D(500), free=D(100), closing=D("0.1")) == D(44000)
    assert close_bound(quantity=D("-0.1"), cost=D(-5000), margin=D(500), free=D(100), closing=D("0.1")) == D(56000)
    with pytest.raises(ValueError):
        close_bound(quantity=D("0.1"), cost=D(5000), margin=D(500), free=D(0), closing=D("0.2"))


def test_a_close_into_a_thin_book_stops_at_the_bound_and_the_matcher_goes_on(perp):  # noqa: F811
    alice, bob, carol = trader(perp, "500"), trader(perp, "10000"), trader(perp, "100000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    assert balance(alice, perp) == (D(500), D(0))  # everything she has is behind the position
    send(carol, perp, "buy", "44000", "0.1", leverage=D(2), margin_mode="cross")  # the only bid
    match(perp)
    # Her market sell protected at 40,000 would sell at 44,000 and lose 600 with 500 behind it: the batch would
    # fail on the fund lock's rule, for everyone. It is protected at 45,000 instead and cancelled.
    close = send(alice, perp, "sell", "40000", "0.1", kind="market", time_in_force="ioc", reduce_only=True,
                 leverage=D(1), margin_mode="isolated")
    resting = send(alice, perp, "sell", "44000", "0.1", reduce_only=True, leverage=D(1), margin_mode="isolated")
    later = send(bob, perp, "buy", "49000", "0.05", leverage=D(5), margin_mode="cross")  # another trader's order
    match(perp)
    assert state(close)[:2] == ("cancelled", D(0))
    assert state(resting) == ("rejected", D(0), "insufficient_collateral")
    assert state(later)[0] == "accepted"
    assert position(alice, perp)[0] == D("0.1") and balance(alice, perp) == (D(500), D(0))
    send(carol, perp, "buy", "45000", "0.1", leverage=D(2), margin_mode="cross")
    fair = send(alice, perp, "sell", "40000", "0.1", kind="market", time_in_force="ioc", reduce_only=True,
                leverage=D(1), margin_mode="isolated")
    match(perp)  # 0.05 to Bob's bid at 49,000, 0.05 to Carol's at 45,000, the bound: 300 of her 500 lost
    assert state(fair)[:2] == ("filled", D("0.1"))
    assert position(alice, perp)[0] == D(0) and balance(alice, perp) == (D(0), D(200))
    report = invariants_check()
    assert report.ok, report.violations


def test_a_loss_beyond_everything_a_trader_has_is_the_insurance_fund_s(perp, now, time_machine):  # noqa: F811
    # Alice's resting reduce-only sell at 45,000 was within her collateral when she placed it; a funding payment
    # since took 20 of her margin, so a fill there now loses 20 more than she has. The fund pays it: she ends at
    # exactly zero, the fund 20 below, its alert raised; the batch goes through for everyone.
    time_machine.move_to(now)
    alice, bob, carol = trader(perp, "500"), trader(perp, "10000"), trader(perp, "100000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    resting = send(alice, perp, "sell", "45000", "0.1", reduce_only=True, leverage=D(1), margin_mode="isolated")
    match(perp)
    assert state(resting)[0] == "accepted"
    at = funding_time(now)
    MarkPrice.objects.create(contract=perp, at=at, index_px=D(50000), basis=D(200), mark_px=D(50200))
    Perpetual.objects.filter(contract=perp).update(mark_px=D(50000), index_px=D(50000), marked_at=now)
    perpetuals_fund(now=now)  # 0.4% capped at 0.75%: Alice pays 0.1 x 50,000 x 0.004 = 20 from her margin
    assert position(alice, perp)[4] == D(480)
    send(carol, perp, "buy", "45000", "0.1", leverage=D(2), margin_mode="cross")
    match(perp)
    assert state(resting)[:2] == ("filled", D("0.1"))
    assert balance(alice, perp) == (D(0), D(0))
    fund = insurance_fund_client(now=now)
    [shortfall] = CashMovement.objects.filter(origin="insurance", client=alice)
    assert shortfall.amount == D(20) and shortfall.origin_ref.endswith(":shortfall")
    assert FundLock.objects.get(client=fund, currency=perp.collateral).available == D(-20)
    perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    assert OperatorAlert.objects.get(resolved_at__isnull=True).kind == "insurance_fund"
    report = invariants_check()
    assert report.ok, report.violations
