"""What the three venues share: a ccxt exchange built offline, its errors mapped to VenueError, exact prices.

ccxt builds each request (URL, parameters) and checks the answer for the venue's error shapes; the price
itself is read from the venue's raw answer (``ticker["info"]``, or the raw candle body re-read with
``parse_float=Decimal``), never from ccxt's parsed floats.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import ccxt
import requests

from ccp.clock import require_aware

from .base import Venue, VenueError, VenueQuote

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MINUTE = timedelta(minutes=1)


def epoch_ms(at: datetime) -> int:
    return (at - EPOCH) // timedelta(milliseconds=1)


class CcxtVenue(Venue):
    """A Venue on a ccxt exchange; a subclass names the exchange, its markets, and where its answers carry prices."""

    exchange_class: ClassVar[type[ccxt.Exchange]]
    markets: ClassVar[Mapping[str, str]]  # the symbols served: ccxt unified symbol -> the venue's market id
    ccxt_options: ClassVar[Mapping[str, Any]] = {}
    error_codes: ClassVar[Mapping[str, type[ccxt.BaseError]]] = {}  # venue error codes ccxt maps too broadly

    def __init__(self, *, timeout_s: float = 5.0, session: requests.Session | None = None) -> None:
        # ccxt takes ms and hands them to requests: a limit on connecting and on each wait for bytes.
        # No rate limiter: the beat task calls each venue once per cycle, and its sleeps would eat the timeout.
        config: dict[str, Any] = {"timeout": round(timeout_s * 1000), "enableRateLimit": False,
                                  "options": dict(self.ccxt_options)}
        if session is not None:
            config["session"] = session
        if self.error_codes:
            config["exceptions"] = {"exact": dict(self.error_codes)}
        self.exchange = self.exchange_class(config)
        # Markets set by hand: ccxt's load_markets would fetch every market of the venue on first use.
        self.exchange.set_markets([_spot_market(symbol, market_id) for symbol, market_id in self.markets.items()])

    @abstractmethod
    def last_price(self, info: dict[str, Any]) -> object:
        """The last trade price in the venue's raw ticker answer (``ticker["info"]``), as the venue sent it."""

    @abstractmethod
    def candle_closes(self, body: Any) -> Iterable[tuple[int, object]]:
        """(open time in epoch ms, close as sent) for each candle of the raw candle answer."""

    def ticker(self, symbol: str) -> VenueQuote:
        self._require_listed(symbol)
        with self._mapped_errors(symbol):
            ticker = self.exchange.fetch_ticker(symbol)
            info, timestamp = ticker["info"], ticker["timestamp"]
            if not isinstance(info, dict) or not isinstance(timestamp, int):
                raise VenueError("malformed", f"{self.name} {symbol}: ticker without a price or a time: {info!r:.200}")
            price = self._price(self.last_price(info))
        return VenueQuote(self.name, symbol, price, EPOCH + timedelta(milliseconds=timestamp))

    def price_at(self, symbol: str, minute: datetime) -> VenueQuote:
        minute = require_aware(minute)
        if minute.second or minute.microsecond:
            raise ValueError(f"price_at takes a whole minute, not {minute.isoformat()}")
        opens_ms = epoch_ms(minute - ONE_MINUTE)
        self._require_listed(symbol)
        with self._mapped_errors(symbol):
            self.exchange.last_http_response = None  # so a failed call can never be read as the previous answer
            self.exchange.fetch_ohlcv(symbol, "1m", since=opens_ms, limit=1)
            # Re-read the raw body: parse_float=Decimal keeps the venue's digits even where it sends JSON numbers.
            body = json.loads(self.exchange.last_http_response, parse_float=Decimal)
            closes = dict(self.candle_closes(body))
            if opens_ms not in closes:
                raise VenueError("not_found", f"{self.name} {symbol}: no 1-minute candle ends at {minute.isoformat()}")
            price = self._price(closes[opens_ms])
        return VenueQuote(self.name, symbol, price, minute)

    def _require_listed(self, symbol: str) -> None:
        # Checked here because ccxt's market() would also accept a raw venue id such as "btcusd".
        if symbol not in self.markets:
            raise VenueError("not_found", f"{self.name} has no market {symbol!r}: one of {', '.join(self.markets)}")

    def _price(self, raw: object) -> Decimal:
        # A float could only come from a JSON number in ccxt's parse: refuse it rather than guess its digits.
        if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
            raise VenueError("malformed", f"{self.name}: price {raw!r} is not a decimal string")
        try:
            price = Decimal(raw)
        except InvalidOperation as exc:
            raise VenueError("malformed", f"{self.name}: price {raw!r} is not a decimal") from exc
        if not price.is_finite() or price <= 0:
            raise VenueError("malformed", f"{self.name}: price {raw!r} is not positive")
        return price

    @contextmanager
    def _mapped_errors(self, symbol: str) -> Iterator[None]:
        try:
            yield
        except ccxt.BadSymbol as exc:
            raise VenueError("not_found", f"{self.name} does not list {symbol}: {exc}") from exc
        except ccxt.BadResponse as exc:
            raise VenueError("malformed", f"{self.name} {symbol}: {type(exc).__name__}: {exc}") from exc
        except ccxt.BaseError as exc:  # NetworkError, RequestTimeout, ExchangeNotAvailable, DDoSProtection, refusals
            raise VenueError("unavailable", f"{self.name} {symbol}: {type(exc).__name__}: {exc}") from exc
        except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            # ccxt's parser or ours choked: the answer is not in the venue's documented shape.
            raise VenueError("malformed", f"{self.name} {symbol}: {type(exc).__name__}: {exc}") from exc


def _spot_market(symbol: str, market_id: str) -> dict[str, Any]:
    """The few fields ccxt's fetch_ticker / fetch_ohlcv read from a spot market."""
    base, quote = symbol.split("/")
    return {"id": market_id, "symbol": symbol, "base": base, "quote": quote, "baseId": base, "quoteId": quote,
            "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
            "contract": False, "active": True}
