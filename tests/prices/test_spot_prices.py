"""The spot price loop on recorded venue answers: a venue down is skipped, twice is once, stale is unused."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from ccp.prices.models import SpotPrice, VenueSymbol
from ccp.prices.services import spot_price_fresh, spot_prices_load
from tests.contracts.test_expiry_day import recorded_venues

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)



def test_every_enabled_venue_is_stored_once(pair):
    spot_prices_load(now=NOW, venue_factory=recorded_venues())
    spot_prices_load(now=NOW, venue_factory=recorded_venues())
    prices = {source: str(price.normalize()) for source, price in SpotPrice.objects.values_list("source", "price")}
    # each venue's last price, exactly as its answer wrote it
    assert prices == {"gemini": "91310.02", "coinbase": "91297.43", "binance": "91302.51"}


def test_a_venue_that_is_down_is_skipped_and_logged(pair, caplog):
    healthy = recorded_venues()
    down = recorded_venues(down=True)
    with caplog.at_level(logging.WARNING, logger="ccp.prices.services"):
        spot_prices_load(now=NOW, venue_factory=lambda name: down(name) if name == "coinbase" else healthy(name))
    assert sorted(SpotPrice.objects.values_list("source", flat=True)) == ["binance", "gemini"]
    assert "coinbase skipped" in caplog.text and "unavailable" in caplog.text


def test_disabled_venues_are_not_asked(pair):
    VenueSymbol.objects.filter(venue="binance").update(enabled=False)
    spot_prices_load(now=NOW, venue_factory=recorded_venues())
    assert sorted(SpotPrice.objects.values_list("source", flat=True)) == ["coinbase", "gemini"]


def test_a_stale_price_is_not_offered_for_anything_that_moves_money(pair, settings):
    spot_prices_load(now=NOW, venue_factory=recorded_venues())
    newest = SpotPrice.objects.order_by("-observed_at").first()
    assert spot_price_fresh(pair=pair, now=newest.observed_at + timedelta(seconds=60)) == newest
    stale_at = newest.observed_at + settings.CCP_SPOT_STALE_AFTER + timedelta(seconds=1)
    assert spot_price_fresh(pair=pair, now=stale_at) is None
