"""A crash and a rebound over many leveraged accounts, isolated and cross, against a thin book: after every price
tick (new mark, liquidations, the matcher, liquidations again) every invariant holds: cash sums to zero, positions
sum to zero per contract, available collateral is never negative, and no account is left with negative equity at
the mark unless the insurance fund or ADL took it over."""

import random
from datetime import datetime, timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.perps.cross import CrossLeg, cross_accounts_below, cross_cash, cross_equity
from ccp.perps.fund import insurance_fund_client
from ccp.perps.margin import liquidatable, tier_of
from ccp.perps.models import Liquidation, Perpetual
from ccp.perps.services import (
    cross_candidates,
    isolated_candidates,
    perpetual_liquidations_enter,
    perpetual_liquidations_run,
    perpetual_marks_update,
)
from ccp.risk.models import Position
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, trader
from tests.perps.test_listing import quote
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def equities(contract) -> dict[int, D]:
    """Each client's equity at the perpetual's mark: an isolated position's margin plus its PnL; a cross account's
    cash outside isolated margins plus its cross positions' value (``ccp.perps.cross``)."""
    perpetual = Perpetual.objects.get(contract=contract)
    mark, settle = perpetual.mark_px, perpetual.settle_px
    found = {}
    for position in Position.objects.filter(contract=contract).exclude(quantity=0):
        q, entry = position.quantity, position.cost / position.quantity
        if position.margin_mode == "isolated":
            found[(position.client_id, "isolated")] = position.margin + q * (mark - entry)
            continue
        fund = FundLock.objects.get(client_id=position.client_id, currency=contract.collateral)
        leg = CrossLeg(contract_id=contract.pk, position_id=position.pk, quantity=q, cost=position.cost,
                       margin=position.margin,
                       settle_px=settle, mark=mark, rate=D("0.005"), fee_rate=D(0))
        cash = cross_cash(fundlock=fund.fundlock, settle_value=fund.settle_value, lockup_value=fund.lockup_value,
                          margin_value=fund.margin_value, legs=[leg])
        found[(position.client_id, "cross")] = cross_equity(cash, [leg])
    return found


def market(contract, now, rng):
    """A maker and 40 leveraged traders (three quarters long, isolated or cross, 2x to 50x) who opened at
    50,000, then a thin bid and ask ladder: the book cannot take every liquidation."""
    maker = trader(contract, "100000000")
    quote(contract.pair, "binance", "50000", now)
    perpetual_marks_update(now=now)
    for _ in range(40):
        client = trader(contract, str(rng.choice([500, 1000, 2000, 5000])))
        side = "buy" if rng.random() < 0.75 else "sell"
        leverage = D(rng.choice([2, 5, 10, 20, 50]))
        mode = rng.choice(["isolated", "cross"])
        size = D(rng.choice(["0.02", "0.05", "0.1", "0.2"]))
        size = min(size, (D(1000) * leverage / D(50000)).quantize(D("0.001")))
        other = "sell" if side == "buy" else "buy"
        send(maker, contract, other, "50000", str(size), leverage=D(1), margin_mode="cross")
        send(client, contract, side, "50000", str(size), leverage=leverage, margin_mode=mode)
    match(contract)
    assert Position.objects.filter(contract=contract).exclude(quantity=0).count() > 30  # a few were refused
    for step in range(1, 16):
        send(maker, contract, "buy", str(50000 - 1000 * step), "0.05", leverage=D(1), margin_mode="cross")
        send(maker, contract, "sell", str(50000 + 1000 * step), "0.05", leverage=D(1), margin_mode="cross")
    match(contract)


def test_a_crash_and_a_rebound_keep_every_invariant(perp, now, time_machine):  # noqa: F811
    time_machine.move_to(now)
    market(perp, now, random.Random(20261205))

    at = now
    path = [49000, 48000, 47000, 46000, 45000, 44000, 43000, 42000, 41000, 40000, 42000, 45000, 47000]
    for price in path:
        at += timedelta(seconds=5)
        time_machine.move_to(at)
        quote(perp.pair, "binance", str(price), at)
        perpetual_marks_update(now=at)
        for _ in range(3):  # liquidations, the matcher, and again: what the book could not take goes further
            perpetual_liquidations_enter(contract_id=perp.pk, now=at)
            match(perp)
        report = invariants_check()
        assert report.ok, (price, report.violations)
        fund = insurance_fund_client(now=at).pk  # its loss is what it covers: checked apart
        negative = {key: value for key, value in equities(perp).items() if value < 0 and key[0] != fund}
        assert negative == {}, (price, negative)
    kinds = set(Liquidation.objects.filter(contract=perp).values_list("kind", flat=True))
    assert kinds == {"order", "takeover", "adl"}  # this crash went all the way down the waterfall


def falling(contract, now, time_machine) -> datetime:
    """The marks fall 10% in five ticks, 5 s apart (the price loop stores them); returns the last tick's time."""
    at = now
    for price in (49000, 48000, 47000, 46000, 45000):
        at += timedelta(seconds=5)
        time_machine.move_to(at)
        quote(contract.pair, "binance", str(price), at)
        perpetual_marks_update(now=at)
    return at


def isolated_walk(contract) -> set[int]:
    """The clients whose isolated position is liquidatable at the mark: a plain walk over every position."""
    perpetual = Perpetual.objects.get(contract=contract)
    found = set()
    for position in Position.objects.filter(contract=contract, margin_mode="isolated").exclude(quantity=0):
        q, entry = position.quantity, position.cost / position.quantity
        if liquidatable(quantity=q, entry_px=entry, margin=position.margin, mark=perpetual.mark_px,
                        rate=tier_of(perpetual.tier_list, q).rate, fee_rate=perpetual.liquidation_fee_rate):
            found.add(position.client_id)
    return found


def test_a_restart_mid_crash_finds_every_position_that_crossed_meanwhile(perp, now, time_machine):  # noqa: F811
    # The liquidation worker is down while the marks fall 10% (the price loop still stores them); the first
    # check after it comes back finds every position the last mark crossed: the trigger prices live with the
    # positions in PostgreSQL, from which the check builds its live index (ccp.perps.live; tests/perps/test_live.py
    # has a worker that kept its index).
    time_machine.move_to(now)
    market(perp, now, random.Random(7))
    at = falling(perp, now, time_machine)
    fund = insurance_fund_client(now=at).pk
    crossed = isolated_walk(perp)
    crossed |= {found.client_id for found in cross_accounts_below(
        contract_id=perp.pk, currency_id=perp.collateral_id, fresh_since=at, exclude=[fund]) if found.below}
    assert len(crossed) >= 5  # a plain walk over every position, against what the check finds
    steps = perpetual_liquidations_enter(contract_id=perp.pk, now=at)
    assert {step.client_id for step in steps} == crossed


def test_a_crash_is_liquidated_in_small_transactions_worst_first(perp, now, time_machine, settings):  # noqa: F811
    # The tasks enter a crash tick's liquidations a few positions per transaction, worst first, until none is
    # left: the contract's row (and its matcher) is never held for the whole crash.
    settings.CCP_LIQUIDATIONS_PER_CHECK = 3
    time_machine.move_to(now)
    market(perp, now, random.Random(20261205))
    at = now + timedelta(seconds=5)
    time_machine.move_to(at)
    quote(perp.pair, "binance", "45000", at)
    perpetual_marks_update(now=at)
    perpetual = Perpetual.objects.get(contract=perp)
    fund = insurance_fund_client(now=at).pk
    found = isolated_candidates(contract=perp, perpetual=perpetual, mark=perpetual.mark_px, exclude={fund})
    found += cross_candidates(contract=perp, perpetual=perpetual, mark=perpetual.mark_px, exclude={fund}, now=at)[0]
    assert len(found) > 6
    worst = min(found, key=lambda c: (c.equity / c.requirement, c.position_id))
    steps = perpetual_liquidations_run(contract_id=perp.pk, now=at)
    assert steps[0].client_id == worst.client_id
    assert {step.client_id for step in steps} == {c.client_id for c in found}  # every one, three at a time
