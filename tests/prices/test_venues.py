"""Price venues replayed from fixtures (see fixtures/README.md) through a real requests transport: no network,
no mock of ccxt. Runs without the database: pytest -p no:django tests/prices."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from ccp.prices.venues import VENUES, Venue, VenueError, VenueQuote, venue
from tests.prices.replay import Answer, Replay, fixture

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the candle asked for opens at 11:59: 1795175940000 ms
TICKER_AT = datetime(2026, 11, 21, 9, 29, 59, 250000, tzinfo=UTC)
Body = Any  # a fixture's JSON, as the tests edit it
Locator = Callable[[Body], tuple[Any, Any]]  # where a price sits in an answer: (container, key)


@dataclass(frozen=True)
class Case:
    """One venue's endpoints, fixtures, and where its answers carry the price."""

    name: str
    host: str
    symbol: str
    ticker_path: str
    ticker_query: dict[str, str]
    ticker_file: str
    last_price: str  # as the fixture writes it
    last_at: Locator
    candles_path: str
    candles_query: dict[str, str]  # what ccxt must send for the minute NOON
    candles_file: str
    close_1159: str  # as the fixture writes it
    close_at: Locator
    without_1159: Callable[[Body], None]  # edits the answer into one without the 11:59 candle
    symbol_error: str | None  # the venue's "no such symbol" answer (HTTP 400), where ccxt can tell it apart


def _gemini_1159(body: Body) -> list:
    return next(row for row in body if row[0] == 1795175940000)


def _coinbase_1159(body: Body) -> dict:
    return next(candle for candle in body["candles"] if candle["start"] == "1795175940")


def _binance_gap(body: Body) -> None:
    """Binance answers a gap with the next candle that exists: here the 12:00 one."""
    body[0][0], body[0][6] = 1795176000000, 1795176059999


CASES = [
    Case(
        name="gemini", host="api.gemini.com", symbol="BTC/USD",
        ticker_path="/v1/pubticker/btcusd", ticker_query={}, ticker_file="gemini/pubticker_btcusd.json",
        last_price="91310.02", last_at=lambda b: (b, "last"),
        candles_path="/v2/candles/btcusd/1m", candles_query={},  # Gemini takes no start time: its whole window
        candles_file="gemini/candles_btcusd_1m.json", close_1159="91250.10", close_at=lambda b: (_gemini_1159(b), 4),
        without_1159=lambda b: b.remove(_gemini_1159(b)),
        symbol_error="gemini/error_invalid_symbol.json",
    ),
    Case(
        name="coinbase", host="api.coinbase.com", symbol="BTC/USD",
        ticker_path="/api/v3/brokerage/market/products/BTC-USD/ticker", ticker_query={"limit": "1"},
        ticker_file="coinbase/ticker_btc-usd.json", last_price="91297.43", last_at=lambda b: (b["trades"][0], "price"),
        candles_path="/api/v3/brokerage/market/products/BTC-USD/candles",
        candles_query={"granularity": "ONE_MINUTE", "start": "1795175940", "end": "1795176000"},
        candles_file="coinbase/candles_btc-usd_1m.json", close_1159="91240.50",
        close_at=lambda b: (_coinbase_1159(b), "close"),
        without_1159=lambda b: b["candles"].clear(),
        symbol_error=None,  # no documented "unknown product" shape to replay
    ),
    Case(
        name="binance", host="api.binance.com", symbol="BTC/USDT",
        ticker_path="/api/v3/ticker/24hr", ticker_query={"symbol": "BTCUSDT"},
        ticker_file="binance/ticker_24hr_btcusdt.json", last_price="91302.51000000", last_at=lambda b: (b, "lastPrice"),
        candles_path="/api/v3/klines",
        candles_query={"interval": "1m", "limit": "1", "symbol": "BTCUSDT", "startTime": "1795175940000"},
        candles_file="binance/klines_btcusdt_1m.json", close_1159="91275.46000000", close_at=lambda b: (b[0], 4),
        without_1159=_binance_gap,
        symbol_error="binance/error_invalid_symbol.json",
    ),
]
OPERATIONS = ["ticker", "price_at"]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request) -> Case:
    return request.param


def _edited(path: str, edit: Callable[[Body], None]) -> bytes:
    """A fixture with one thing changed: the shape of a venue answer gone wrong."""
    body = json.loads(fixture(path))
    edit(body)
    return json.dumps(body).encode()


def _set(at: Locator, value: Any) -> Callable[[Body], None]:
    def edit(body: Body) -> None:
        container, key = at(body)
        container[key] = value
    return edit


def _drop(at: Locator) -> Callable[[Body], None]:
    def edit(body: Body) -> None:
        container, key = at(body)
        # a candle row cut short before its close, or an object without the field
        del container[slice(key, None) if isinstance(container, list) else key]
    return edit


def _replay(case: Case, operation: str | None = None, answer: Answer | None = None, *,
            timeout_s: float = 5.0) -> tuple[Venue, Replay]:
    """The case's venue on a session whose transport serves the fixtures, or ``answer`` for ``operation``."""
    session = requests.Session()
    replay = Replay(case.host).mount_on(session)
    ticker = answer if answer and operation == "ticker" else Answer(fixture(case.ticker_file))
    candles = answer if answer and operation == "price_at" else Answer(fixture(case.candles_file))
    replay.route(case.ticker_path, ticker, case.ticker_query)
    replay.route(case.candles_path, candles, case.candles_query)
    return venue(case.name, timeout_s=timeout_s, session=session), replay


def _call(adapter: Venue, operation: str, symbol: str) -> VenueQuote:
    return adapter.ticker(symbol) if operation == "ticker" else adapter.price_at(symbol, NOON)


def test_ticker_price_is_the_venues_decimal_string_exactly(case: Case):
    adapter, replay = _replay(case)

    quote = adapter.ticker(case.symbol)

    assert quote == VenueQuote(case.name, case.symbol, Decimal(case.last_price), TICKER_AT)
    assert str(quote.price) == case.last_price  # digits as sent, trailing zeros included: never through a float
    assert len(replay.seen) == 1  # one request, its path and query asserted by the transport: no load_markets


def test_price_at_noon_is_the_close_of_the_1159_candle(case: Case):
    adapter, replay = _replay(case)

    quote = adapter.price_at(case.symbol, NOON)

    assert quote == VenueQuote(case.name, case.symbol, Decimal(case.close_1159), NOON)
    assert str(quote.price) == case.close_1159
    assert len(replay.seen) == 1  # the candle query itself is asserted by the transport


def test_price_at_takes_any_aware_timezone_for_the_same_minute(case: Case):
    adapter, _ = _replay(case)

    quote = adapter.price_at(case.symbol, NOON.astimezone(ZoneInfo("America/New_York")))

    assert quote.at == NOON and quote.at.tzinfo == UTC and quote.price == Decimal(case.close_1159)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("answer", [
    Answer(fixture("outage.html"), status=503, content_type="text/html"),
    Answer(b'{"message":"Too many requests"}', status=429),
    Answer(error=requests.exceptions.ConnectionError),
], ids=["http-503", "http-429", "connection-error"])
def test_venue_down_is_unavailable(case: Case, operation: str, answer: Answer):
    adapter, _ = _replay(case, operation, answer)

    with pytest.raises(VenueError) as error:
        _call(adapter, operation, case.symbol)

    assert error.value.code == "unavailable"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_slow_venue_times_out_as_unavailable(case: Case, operation: str):
    adapter, replay = _replay(case, operation, Answer(b"{}", delay_s=30), timeout_s=0.1)

    with pytest.raises(VenueError) as error:
        _call(adapter, operation, case.symbol)

    assert error.value.code == "unavailable"
    assert [timeout for _, timeout in replay.seen] == [0.1]  # the venue's timeout reached the transport


HTML = Answer(fixture("outage.html"), content_type="text/html")  # a CDN or maintenance page, status 200
MALFORMED: dict[str, tuple[str, Callable[[Case], Answer]]] = {
    "ticker-html": ("ticker", lambda case: HTML),
    "ticker-empty-json": ("ticker", lambda case: Answer(b"{}")),
    "ticker-missing-price": ("ticker", lambda case: Answer(_edited(case.ticker_file, _drop(case.last_at)))),
    "ticker-negative-price": ("ticker", lambda case: Answer(_edited(case.ticker_file, _set(case.last_at, "-1.5")))),
    "ticker-zero-price": ("ticker", lambda case: Answer(_edited(case.ticker_file, _set(case.last_at, "0")))),
    "ticker-not-a-number": ("ticker", lambda case: Answer(_edited(case.ticker_file, _set(case.last_at, "n/a")))),
    "ticker-json-number": ("ticker", lambda case: Answer(_edited(case.ticker_file, _set(case.last_at, 91310.02)))),
    "candles-html": ("price_at", lambda case: HTML),
    "candles-missing-close": ("price_at", lambda case: Answer(_edited(case.candles_file, _drop(case.close_at)))),
    "candles-negative-close": ("price_at", lambda case: Answer(_edited(case.candles_file, _set(case.close_at, "-1")))),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_answer_is_malformed(case: Case, kind: str):
    operation, answer = MALFORMED[kind]
    adapter, _ = _replay(case, operation, answer(case))

    with pytest.raises(VenueError) as error:
        _call(adapter, operation, case.symbol)

    assert error.value.code == "malformed", error.value


def test_no_candle_for_the_minute_is_not_found(case: Case):
    adapter, _ = _replay(case, "price_at", Answer(_edited(case.candles_file, case.without_1159)))

    with pytest.raises(VenueError) as error:
        adapter.price_at(case.symbol, NOON)

    assert error.value.code == "not_found"


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("symbol", ["DOGE/EUR", "btcusd", "BTCUSDT", "BTC-USD", ""])
def test_unknown_symbol_is_not_found_without_a_request(case: Case, operation: str, symbol: str):
    adapter, replay = _replay(case)

    with pytest.raises(VenueError) as error:
        _call(adapter, operation, symbol)

    assert error.value.code == "not_found"
    assert replay.seen == []


@pytest.mark.parametrize("operation", OPERATIONS)
def test_symbol_the_venue_no_longer_lists_is_not_found(case: Case, operation: str):
    if case.symbol_error is None:
        pytest.skip(f"{case.name}: no documented answer for an unknown product")
    adapter, _ = _replay(case, operation, Answer(fixture(case.symbol_error), status=400))

    with pytest.raises(VenueError) as error:
        _call(adapter, operation, case.symbol)

    assert error.value.code == "not_found"


@pytest.mark.parametrize("minute", [datetime(2026, 11, 20, 12, 0), NOON.replace(second=30)], ids=["naive", "12:00:30"])
def test_price_at_refuses_a_naive_or_partial_minute(case: Case, minute: datetime):
    adapter, replay = _replay(case)

    with pytest.raises(ValueError):
        adapter.price_at(case.symbol, minute)

    assert replay.seen == []


def test_venues_are_built_offline_with_the_timeout_and_no_rate_limiter():
    session = requests.Session()
    session.mount("https://", Replay("nowhere.invalid"))  # any request would fail the test

    for name in VENUES:
        adapter = venue(name, timeout_s=2.5, session=session)
        assert adapter.name == name
        assert adapter.exchange.timeout == 2500 and adapter.exchange.enableRateLimit is False
        assert adapter.exchange.session is session

    with pytest.raises(ValueError):
        venue("kraken")


def test_venue_error_codes_are_the_three_documented():
    assert VenueError("not_found").code == "not_found"
    with pytest.raises(ValueError):
        VenueError("boom")  # type: ignore[arg-type]
