"""The index price of a pair: the median of each venue's newest fresh price; stale and missing venues
left out; no fresh venue, no index (issue 11, market data)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.clock import utcnow
from ccp.prices.models import SpotPrice
from ccp.prices.selectors import index_prices
from ccp.prices.services import spot_prices_load
from tests.conftest import NOW
from tests.contracts.test_expiry_day import recorded_venues
from tests.factories import ContractFactory

pytestmark = pytest.mark.django_db



def quote(pair, venue: str, price: str, age_s: int) -> None:
    SpotPrice.objects.create(pair=pair, source=venue, price=D(price), observed_at=NOW - timedelta(seconds=age_s),
                             fetched_at=NOW)


def test_the_index_is_the_median_of_each_venues_newest_fresh_price(pair):
    quote(pair, "gemini", "100000", 10)
    quote(pair, "gemini", "90000", 50)  # older quote of the same venue: not used
    quote(pair, "coinbase", "100100", 30)
    quote(pair, "binance", "100300", 60)
    (index,) = index_prices(now=NOW)
    assert index.price == D("100100") and [v.source for v in index.venues] == ["binance", "coinbase", "gemini"]


def test_stale_venues_are_left_out_and_an_even_count_takes_the_middle_two(pair):
    quote(pair, "gemini", "100000", 10)
    quote(pair, "coinbase", "100101", 100)
    quote(pair, "binance", "130000", 121)  # older than CCP_SPOT_STALE_AFTER (120 s)
    SpotPrice.objects.create(pair=pair, source="settlement", price=D("1"), observed_at=NOW, fetched_at=NOW,
                             is_settlement=True)  # a settlement price is not a quote
    (index,) = index_prices(now=NOW)
    assert index.price == D("100050.5") and {v.source for v in index.venues} == {"gemini", "coinbase"}


def test_no_fresh_venue_means_no_index(pair):
    quote(pair, "gemini", "100000", 500)
    (index,) = index_prices(now=NOW)
    assert index.price is None and index.venues == ()


def test_the_index_of_the_venues_recorded_answers_is_their_median(pair):
    stored = spot_prices_load(now=NOW, venue_factory=recorded_venues())
    observed = max(p.observed_at for p in stored)
    (index,) = index_prices(now=observed)  # the recorded tickers are of one moment: then all are fresh
    assert len(index.venues) == 3 and index.price == sorted(p.price for p in index.venues)[1]


def test_the_index_is_served_publicly(pair):
    now = utcnow()
    for venue, price in (("gemini", "100000"), ("coinbase", "100200")):
        SpotPrice.objects.create(pair=pair, source=venue, price=D(price), observed_at=now - timedelta(seconds=5),
                                 fetched_at=now)
    response = APIClient().get("/api/v1/index")
    assert response.status_code == 200
    (served,) = response.json()
    assert (served["underlying"], served["price"]) == ("BTC/USDC", "100100")
    assert sorted(v["venue"] for v in served["venues"]) == ["coinbase", "gemini"]
    assert APIClient().get("/api/v1/index?pair=BTC").status_code == 400


@pytest.mark.parametrize(("kind", "strike", "index", "mark"), [
    ("future", None, "100100", "100100"), ("future", None, "200000", "150000"), ("future", None, "1", "50000"),
    ("call", "90000", "100100", "10100"), ("call", "110000", "100100", "0"),
    ("put", "110000", "100100", "9900"), ("put", "90000", "100100", "0"),
])
def test_contracts_carry_their_index_and_mark_by_kind(pair, kind, strike, index, mark):
    contract = ContractFactory(pair=pair, kind=kind, strike_px=D(strike) if strike else None)
    now = utcnow()
    SpotPrice.objects.create(pair=pair, source="gemini", price=D(index), observed_at=now - timedelta(seconds=5),
                             fetched_at=now)
    served = APIClient().get(f"/api/v1/contracts/{contract.symbol}").json()
    assert (served["index_price"], served["mark_price"]) == (index, mark)
    listed = {c["symbol"]: c for c in APIClient().get("/api/v1/contracts").json()["results"]}
    assert listed[contract.symbol]["mark_price"] == mark


def test_without_a_fresh_index_there_is_no_mark(pair):
    contract = ContractFactory(pair=pair, kind="future", strike_px=None)
    served = APIClient().get(f"/api/v1/contracts/{contract.symbol}").json()
    assert (served["index_price"], served["mark_price"]) == (None, None)
