"""Every venue failing for minutes raises an operator alert per pair, resolved once a fresh price comes,
and the health endpoint reports the prices stale."""

import json
from datetime import timedelta

import pytest
import requests
import time_machine
from rest_framework.test import APIClient

from ccp.prices.services import spot_prices_load
from ccp.prices.venues import venue
from ccp.system.models import OperatorAlert
from tests.contracts.test_expiry_day import recorded_venues
from tests.prices.replay import Answer, Replay, fixture
from tests.prices.test_venues import CASES, TICKER_AT

pytestmark = pytest.mark.django_db
DOWN = recorded_venues(down=True)



def binance_back_at(moment):
    """Gemini and Coinbase still down; Binance answers its recorded ticker, closed at ``moment``."""
    case = next(case for case in CASES if case.name == "binance")
    body = json.loads(fixture(case.ticker_file))
    body["closeTime"] = int(moment.timestamp() * 1000)

    def factory(name: str):
        if name != "binance":
            return DOWN(name)
        session = requests.Session()
        Replay(case.host).mount_on(session).route(case.ticker_path, Answer(json.dumps(body).encode()),
                                                  case.ticker_query)
        return venue(name, timeout_s=2, session=session)

    return factory


def health(at):
    with time_machine.travel(at, tick=False):
        response = APIClient().get("/api/v1/health")
    assert response.status_code == 200
    return response.json()


def test_venues_down_for_minutes_raise_an_alert_until_a_fresh_price_comes(pair, settings):
    spot_prices_load(now=TICKER_AT + timedelta(seconds=30), venue_factory=recorded_venues())
    assert not OperatorAlert.objects.exists()
    assert health(TICKER_AT + timedelta(seconds=30))["prices"] == "ok"

    # every venue fails: within the staleness limit nothing is raised, past it an alert for the pair
    spot_prices_load(now=TICKER_AT + settings.CCP_SPOT_STALE_AFTER, venue_factory=DOWN)
    assert not OperatorAlert.objects.exists()
    spot_prices_load(now=TICKER_AT + settings.CCP_SPOT_STALE_AFTER + timedelta(seconds=1), venue_factory=DOWN)
    spot_prices_load(now=TICKER_AT + timedelta(minutes=10), venue_factory=DOWN)
    alert = OperatorAlert.objects.get(resolved_at__isnull=True)
    assert (alert.kind, alert.key, alert.count) == ("prices_stale", f"prices:{pair}", 2)
    assert "600 s old" in alert.message
    assert health(TICKER_AT + timedelta(minutes=10)) | {"heartbeat_at": None} == {
        "status": "degraded", "database": "ok", "heartbeat_at": None, "prices": "stale", "prices_age_seconds": 600,
        "prices_stale_pairs": [str(pair)]}

    # one venue answers again with a fresh price: the alert is resolved, the health is ok
    back = TICKER_AT + timedelta(minutes=11)
    spot_prices_load(now=back + timedelta(seconds=1), venue_factory=binance_back_at(back))
    assert OperatorAlert.objects.get().resolved_at == back + timedelta(seconds=1)
    assert health(back + timedelta(seconds=1)) | {"heartbeat_at": None} == {
        "status": "ok", "database": "ok", "heartbeat_at": None, "prices": "ok", "prices_age_seconds": 1,
        "prices_stale_pairs": []}


def test_a_pair_never_priced_is_stale_at_once(pair):
    spot_prices_load(now=TICKER_AT, venue_factory=DOWN)
    assert OperatorAlert.objects.get().message.startswith(f"No fresh spot price for {pair}: no venue price yet")
    assert health(TICKER_AT) | {"heartbeat_at": None} == {
        "status": "degraded", "database": "ok", "heartbeat_at": None, "prices": "stale", "prices_age_seconds": None,
        "prices_stale_pairs": [str(pair)]}
