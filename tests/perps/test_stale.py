"""A stale index blocks liquidations (and opens) and raises the pair's operator alert; the first fresh price
liquidates what the moves meanwhile left below its requirement."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.perps.models import Liquidation
from ccp.perps.services import perpetual_liquidations_enter, perpetual_marks_update
from ccp.prices.services import spot_prices_load
from ccp.system.models import OperatorAlert
from tests.book.test_venue import match, send, trader
from tests.contracts.test_expiry_day import recorded_venues
from tests.perps.test_listing import quote
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_no_liquidation_on_a_stale_index_and_an_alert_until_a_fresh_price(perp, now, settings,  # noqa: F811
                                                                          time_machine, api_as):
    time_machine.move_to(now)
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)  # Alice liquidates at 45,317
    quote(perp.pair, "binance", "49000", now)
    perpetual_marks_update(now=now)

    stale = now + settings.CCP_SPOT_STALE_AFTER + timedelta(seconds=1)
    time_machine.move_to(stale)
    spot_prices_load(now=stale, venue_factory=recorded_venues(down=True))  # every venue fails
    perpetual_marks_update(now=stale)
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=stale) == []
    alert = OperatorAlert.objects.get(resolved_at__isnull=True)
    assert (alert.kind, alert.key) == ("prices_stale", f"prices:{perp.pair}")
    answer = api_as(alice).post("/api/v1/positions", {"contract": perp.symbol, "side": "long", "margin": "100",
                                                      "leverage": "5"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (409, "index_stale")

    later = stale + timedelta(seconds=5)
    time_machine.move_to(later)
    quote(perp.pair, "binance", "45000", later)  # the price fell meanwhile: the first fresh mark liquidates
    perpetual_marks_update(now=later)
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=later)
    assert (step.client_id, step.mark_px) == (alice.pk, D(45000))
    assert Liquidation.objects.count() == 1
