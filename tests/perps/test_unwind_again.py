"""Reproduction (bench/liquidation_book.py found it): the insurance fund's unwind order is named by the mark's time
(``unwind-<contract>-<marked_at>``), so a second check at the same mark after a PARTIAL unwind fill asks again under
that name for the smaller leftover: ``order_submit`` refuses it ``client_order_id_reused`` and the whole check rolls
back (every liquidation it found), until the next mark. The matcher task runs that check after every matcher run on
the perpetual, at the mark of the last price tick: after a partial unwind it fails until the next spot load."""

from decimal import Decimal as D

import pytest

from ccp.errors import Conflict
from ccp.orders.models import Order
from ccp.perps.services import perpetual_liquidations_enter
from tests.book.test_venue import match, send, trader
from tests.perps import test_trading
from tests.perps.test_trading import position
from tests.perps.test_waterfall import funded, long_alice, mark_at

perp = test_trading.perp  # the fixture: a listed perpetual open to orders
pytestmark = pytest.mark.django_db


@pytest.mark.xfail(strict=True, raises=Conflict, reason="the unwind's client_order_id is per mark, not per attempt")
def test_a_second_check_at_the_same_mark_after_a_partial_unwind_passes(perp, now, time_machine):  # noqa: F811
    bob, carol = trader(perp, "10000"), trader(perp, "10000")
    long_alice(perp, (bob, "0.1", 5, "cross"))
    fund = funded(perp, "10000", now)
    send(carol, perp, "buy", "44000", "0.04", leverage=D(5), margin_mode="cross")  # the book takes 0.04 of 0.1
    match(perp)
    mark_at(perp, "44000", now, time_machine)
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)  # the takeover, the unwind order for 0.1
    assert step.kind == "takeover"
    match(perp)
    assert position(fund, perp)[0] == D("0.06")  # 0.04 sold, the rest cancelled (IOC)
    perpetual_liquidations_enter(contract_id=perp.pk, now=now)  # fails: client_order_id_reused
    assert Order.objects.filter(client=fund, client_order_id__startswith="unwind-").count() >= 1
