"""GET /api/v1/health: 200 whenever it can answer; ``degraded`` while a traded pair has no fresh price."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
import time_machine
from rest_framework.test import APIClient

from ccp.prices.models import SpotPrice, VenueSymbol
from tests.conftest import NOW
from tests.factories import ContractFactory

pytestmark = pytest.mark.django_db


def health() -> dict:
    with time_machine.travel(NOW, tick=False):
        response = APIClient().get("/api/v1/health")
    assert response.status_code == 200
    return response.json()


def priced(age_s: int | None, *, state="listed", enabled=True):
    contract = ContractFactory(state=state)
    VenueSymbol.objects.create(pair=contract.pair, venue="gemini", symbol="BTC/USD", enabled=enabled)
    if age_s is not None:
        SpotPrice.objects.create(pair=contract.pair, source="gemini", price=D("91000"),
                                 observed_at=NOW - timedelta(seconds=age_s), fetched_at=NOW)
    return contract.pair


def test_without_traded_pairs_prices_are_not_a_concern():
    body = health()
    assert (body["status"], body["prices"], body["prices_age_seconds"], body["prices_stale_pairs"]) == (
        "ok", "ok", None, [])


@pytest.mark.parametrize(("age_s", "status", "prices", "stale"), [
    (5, "ok", "ok", False),
    (120, "ok", "ok", False),  # CCP_SPOT_STALE_AFTER_SECONDS: still fresh
    (121, "degraded", "stale", True),
    (None, "degraded", "stale", True),  # never priced
])
def test_a_traded_pair_without_a_fresh_price_degrades_the_health(age_s, status, prices, stale):
    pair = priced(age_s)
    body = health()
    assert (body["status"], body["prices"], body["prices_age_seconds"]) == (status, prices, age_s)
    assert body["prices_stale_pairs"] == ([str(pair)] if stale else [])


@pytest.mark.parametrize("change", [{"state": "settled"}, {"enabled": False}])
def test_pairs_nobody_polls_are_left_out(change):
    priced(None, **change)
    assert health()["status"] == "ok"
