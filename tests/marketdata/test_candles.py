"""Candles kept as trades are booked: buckets aligned in UTC, open and close by trade sequence, one row per
bucket with trades, re-booking changes nothing; GET /contracts/<symbol>/candles and its strict query."""

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.clearing.services import Execution, trades_book
from ccp.marketdata.candles import INTERVALS, bars_of, bucket_start
from ccp.marketdata.models import Candle, Interval
from tests.factories import ContractFactory
from tests.marketdata.conftest import book

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 21, tzinfo=UTC)


def at(hh: int, mm: int, ss: float = 0, *, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hh, minutes=mm, seconds=ss)


def candles(symbol: str, interval: str, **query) -> list[dict]:
    response = APIClient().get(f"/api/v1/contracts/{symbol}/candles", {"interval": interval, **query})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["contract"], body["interval"]) == (symbol, interval)
    return body["results"]


def ohlc(rows: list[dict]) -> list[tuple]:
    return [(r["start"], r["open"], r["high"], r["low"], r["close"], r["volume"], r["trade_count"],
             r["first_sequence"], r["last_sequence"]) for r in rows]


@pytest.fixture
def traded():
    """Trades 1-9 on one contract at the edges of buckets: 09:30:00 (two), 09:30:59.999999 (the same
    minute), 09:31:00 (the next minute, the same 5 minutes), 09:35:00 (the next 5 minutes), 10:00:00
    (the next hour), 23:59:59.999999 and 00:00:00 the next day (the next day), and one more at
    09:30:30 booked last (a later sequence at an earlier time)."""
    contract = ContractFactory()
    book(contract, [("100", "1"), ("105", "2")], at=at(9, 30), ref="auction-1")
    book(contract, [("95", "1")], at=at(9, 30, 59.999999), ref="auction-2")
    book(contract, [("110", "0.5")], at=at(9, 31), ref="auction-3")
    book(contract, [("90", "1")], at=at(9, 35), ref="auction-4")
    book(contract, [("120", "1")], at=at(10, 0), ref="auction-5")
    book(contract, [("121", "1")], at=at(23, 59, 59.999999), ref="auction-6")
    book(contract, [("130", "3")], at=at(0, 0, day=1), ref="auction-7")
    book(contract, [("99", "1")], at=at(9, 30, 30), ref="auction-8")
    return contract


def test_candles_per_interval_from_a_known_trade_list(traded):
    symbol = traded.symbol
    # then each bucket holds its trades; 09:30's last booked trade (sequence 9, at 09:30:30) is its close
    assert ohlc(candles(symbol, "1m")) == [
        ("2026-11-21T09:30:00Z", "100", "105", "95", "99", "5", 4, 1, 9),
        ("2026-11-21T09:31:00Z", "110", "110", "110", "110", "0.5", 1, 4, 4),
        ("2026-11-21T09:35:00Z", "90", "90", "90", "90", "1", 1, 5, 5),
        ("2026-11-21T10:00:00Z", "120", "120", "120", "120", "1", 1, 6, 6),
        ("2026-11-21T23:59:00Z", "121", "121", "121", "121", "1", 1, 7, 7),
        ("2026-11-22T00:00:00Z", "130", "130", "130", "130", "3", 1, 8, 8),
    ]
    assert ohlc(candles(symbol, "5m")) == [
        ("2026-11-21T09:30:00Z", "100", "110", "95", "99", "5.5", 5, 1, 9),
        ("2026-11-21T09:35:00Z", "90", "90", "90", "90", "1", 1, 5, 5),
        ("2026-11-21T10:00:00Z", "120", "120", "120", "120", "1", 1, 6, 6),
        ("2026-11-21T23:55:00Z", "121", "121", "121", "121", "1", 1, 7, 7),
        ("2026-11-22T00:00:00Z", "130", "130", "130", "130", "3", 1, 8, 8),
    ]
    assert ohlc(candles(symbol, "1h")) == [
        ("2026-11-21T09:00:00Z", "100", "110", "90", "99", "6.5", 6, 1, 9),
        ("2026-11-21T10:00:00Z", "120", "120", "120", "120", "1", 1, 6, 6),
        ("2026-11-21T23:00:00Z", "121", "121", "121", "121", "1", 1, 7, 7),
        ("2026-11-22T00:00:00Z", "130", "130", "130", "130", "3", 1, 8, 8),
    ]
    assert ohlc(candles(symbol, "1d")) == [
        ("2026-11-21T00:00:00Z", "100", "121", "90", "99", "8.5", 8, 1, 9),
        ("2026-11-22T00:00:00Z", "130", "130", "130", "130", "3", 1, 8, 8),
    ]
    # one row per bucket with trades, nothing for the empty ones
    assert Candle.objects.filter(contract=traded).count() == 6 + 5 + 4 + 2


def test_booking_the_same_trades_again_changes_no_candle(traded):
    before = list(Candle.objects.filter(contract=traded).order_by("id").values())
    # when an auction's trades are booked again (a retried apply)
    first = list(traded.trades.filter(venue_ref="auction-1").order_by("sequence"))
    again = trades_book(venue="auction", venue_ref="auction-1", now=at(9, 40), executions=[
        Execution(traded.pk, t.price, t.quantity, t.buy_order_id, t.buy_client_id, t.sell_order_id, t.sell_client_id)
        for t in first])
    # then nothing is booked and no candle moves
    assert again == []
    assert list(Candle.objects.filter(contract=traded).order_by("id").values()) == before


def test_candles_built_booking_by_booking_equal_the_candles_of_all_trades_at_once():
    # given 60 trades over two contracts and three hours, booked in 12 bookings at random times
    rng = random.Random(11)
    contracts = [ContractFactory(), ContractFactory(strike_px=D("110000"))]
    booked = []
    for n in range(12):
        when = at(9, 0) + timedelta(seconds=rng.randrange(3 * 3600))
        for contract in contracts:
            trades = [(str(rng.randrange(90, 130)), str(rng.randrange(1, 5))) for _ in range(rng.randrange(1, 5))]
            booked += book(contract, trades, at=when, ref=f"auction-{n}")
    # then every stored candle is the bar of all its trades together
    stored = {(c.contract_id, c.interval, c.bucket_start): (c.open, c.high, c.low, c.close, c.volume, c.trade_count,
                                                            c.first_sequence, c.last_sequence)
              for c in Candle.objects.filter(contract__in=contracts)}
    expected = {key: (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.first_sequence, b.last_sequence)
                for key, b in bars_of(booked).items()}
    assert stored == expected
    assert {interval for _, interval, _ in stored} == set(INTERVALS) == set(Interval.values)


def test_buckets_align_to_utc():
    when = datetime(2026, 11, 21, 23, 59, 59, 999999, tzinfo=UTC)
    assert [bucket_start(when, i) for i in INTERVALS] == [
        at(23, 59), at(23, 55), at(23, 0), at(0, 0)]
    assert bucket_start(at(0, 0, day=1), "1d") == at(0, 0, day=1)
    # another time zone is the same instant
    assert bucket_start(when.astimezone(timezone(timedelta(hours=5))), "1h") == at(23, 0)


def test_candles_page_by_since_and_until(traded):
    symbol = traded.symbol
    starts = [c["start"] for c in candles(symbol, "1m")]
    # since: the first buckets starting at or after it; until: before it
    assert [c["start"] for c in candles(symbol, "1m", since="2026-11-21T09:31:00Z", limit=2)] == starts[1:3]
    assert [c["start"] for c in candles(symbol, "1m", since="2026-11-21T09:30:01Z",
                                        until="2026-11-21T23:59:00Z")] == starts[1:4]
    # without since: the last ones, still oldest first
    assert [c["start"] for c in candles(symbol, "1m", limit=2)] == starts[-2:]
    assert [c["start"] for c in candles(symbol, "1m", until="2026-11-21T10:00:00Z", limit=2)] == starts[1:3]
    # the next page starts at the last candle's start plus the interval
    assert [c["start"] for c in candles(symbol, "1m", since="2026-11-21T09:36:00Z", limit=1000)] == starts[3:]
    assert candles(symbol, "1m", since="2026-11-23T00:00:00Z") == []


@pytest.mark.parametrize("query", [
    {}, {"interval": "2m"}, {"interval": ""}, {"interval": "1m", "since": ""}, {"interval": "1m", "since": "yesterday"},
    {"interval": "1m", "limit": "0"}, {"interval": "1m", "limit": "1001"}, {"interval": "1m", "limit": "1.5"},
    {"interval": "1m", "cursor": "1"},
    {"interval": "1m", "since": "2026-11-21T10:00:00Z", "until": "2026-11-21T10:00:00Z"},
])
def test_candles_refuse_a_bad_query(traded, query):
    response = APIClient().get(f"/api/v1/contracts/{traded.symbol}/candles", query)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_candles_of_an_unknown_contract_are_404():
    assert APIClient().get("/api/v1/contracts/NO-SUCH/candles", {"interval": "1m"}).status_code == 404
