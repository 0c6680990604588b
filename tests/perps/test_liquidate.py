"""The liquidation engine's first step (``perpetual_liquidations_enter``): an isolated position at or below its
requirement at the mark is reduced on the book by a reduce-only order protected at its bankruptcy price, by the
fewest lots that restore 1.5x its requirement; the liquidated part's loss comes out of its margin."""

from decimal import Decimal as D

import pytest

from ccp.perps.models import Liquidation
from ccp.perps.services import perpetual_liquidations_enter, perpetual_marks_update
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, trader
from tests.perps.test_listing import quote
from tests.perps.test_trading import balance, perp, position  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_a_position_below_its_requirement_is_reduced_until_margin_is_restored(perp, now, time_machine):  # noqa: F811
    time_machine.move_to(now)
    alice, bob, carol = trader(perp, "10000"), trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)  # Alice: 0.1 long at 50,000 with 500 of margin; liquidated at (5,000 - 500) / 0.0993 = 45,317
    send(carol, perp, "buy", "45400", "0.2", leverage=D(2), margin_mode="cross")
    match(perp)
    quote(perp.pair, "binance", "45600", now)
    perpetual_marks_update(now=now)  # a one-sided book: the mark is the index, above 45,317
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=now) == []

    quote(perp.pair, "coinbase", "45000", now)  # median of 45,600 and 45,000: the mark 45,300
    later = now.replace(second=now.second + 1)
    time_machine.move_to(later)
    perpetual_marks_update(now=later)
    available_before = balance(alice, perp)[1]
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=later)
    # equity 500 + 0.1 x (45,300 - 50,000) = 30 <= (0.005 + 0.002) x 0.1 x 45,300 = 31.71;
    # (0.0105 x 4,530 - 30) / (45,300 x 0.0085) = 0.0456... -> 0.046; bankruptcy 50,000 - 500 / 0.1 = 45,000
    assert (step.mark_px, step.equity, step.requirement, step.size, step.bankruptcy_px) == (
        D(45300), D(30), D("31.71"), D("0.046"), D(45000))
    assert (step.order.reduce_only, step.order.kind, step.order.price) == (True, "market", D(45000))
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=later) == []  # its order is still open
    match(perp)  # sold to Carol's bid at 45,400
    # 500 - 0.046 x 4,600 = 288.4, less the fee 0.002 x 0.046 x 45,400 = 4.1768
    assert position(alice, perp)[:1] == (D("0.054"),) and position(alice, perp)[4] == D("284.2232")
    assert balance(alice, perp)[1] == available_before  # the loss and the fee came out of the isolated margin
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=later) == []  # restored: 30.42 >= 1.5 x 17.12
    assert Liquidation.objects.count() == 1
    report = invariants_check()
    assert report.ok, report.violations
