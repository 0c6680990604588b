"""Variation settlement and funding at each funding time (``ccp.perps.services.perpetual_fund``), against
hand-worked numbers: cash summing to zero, an isolated margin taking its funding, a cross client's available
collateral taking its, the reference price moved to the mark, every invariant holding, once per funding time."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.perps.models import Funding, MarkPrice, Perpetual
from ccp.perps.services import funding_time, perpetuals_fund
from ccp.settlement.models import CashMovement
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, trader
from tests.perps.test_trading import balance, perp, position  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_funding_time_is_every_interval_from_midnight(now):
    assert funding_time(now.replace(hour=9, minute=30)) == now.replace(hour=8, minute=0, second=0, microsecond=0)
    assert funding_time(now.replace(hour=7, minute=59)) == now.replace(hour=0, minute=0, second=0, microsecond=0)


def test_variation_and_funding_at_a_funding_time(perp, now):  # noqa: F811 - the fixture
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    at = funding_time(now)
    for hours_before, mark in ((1, "50100"), (0, "50300")):  # premiums 0.2% and 0.6%: the rate is 0.4%
        MarkPrice.objects.create(contract=perp, at=at - timedelta(hours=hours_before), index_px=D(50000),
                                 basis=D(mark) - 50000, mark_px=D(mark))
    Perpetual.objects.filter(contract=perp).update(mark_px=D(50200), index_px=D(50000), marked_at=now)
    before = {c: balance(c, perp) for c in (alice, bob)}

    assert perpetuals_fund(now=now) == [perp.symbol]
    # Variation to 50,200: Alice +20, Bob -20. Funding at 0.4%: Alice pays 0.1 x 50,200 x 0.004 = 20.08 to Bob.
    moved = {(m.client_id, m.origin): m.amount for m in CashMovement.objects.filter(origin_ref__startswith=perp.symbol
                                                                                     + "@")}
    assert moved == {(alice.pk, "variation"): D(20), (bob.pk, "variation"): D(-20),
                     (alice.pk, "funding"): D("-20.08"), (bob.pk, "funding"): D("20.08")}
    assert position(alice, perp)[4] == D("479.92")  # isolated: the margin paid it, available did not move
    assert balance(alice, perp)[1] == before[alice][1]
    assert balance(bob, perp)[1] == before[bob][1] + D("20.08")  # cross: available received it
    assert Perpetual.objects.get(contract=perp).settle_px == D(50200)
    funding = Funding.objects.get(contract=perp)  # the funding history's row
    assert (funding.at, funding.rate, funding.mark_px, funding.samples, funding.paid) == (
        at, D("0.004"), D(50200), 2, D("20.08"))
    report = invariants_check()
    assert report.ok, report.violations

    assert perpetuals_fund(now=now) == []  # once per funding time
    assert CashMovement.objects.filter(origin__in=["variation", "funding"]).count() == 4


def test_nothing_is_settled_without_a_fresh_mark(perp, now):  # noqa: F811 - the fixture
    Perpetual.objects.filter(contract=perp).update(mark_px=D(50200), marked_at=now - timedelta(minutes=10))
    assert perpetuals_fund(now=now) == []
    assert Perpetual.objects.get(contract=perp).funded_at is None
