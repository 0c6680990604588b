"""Gemini spot through ccxt's ``gemini`` exchange: public REST market data, no API key.

- ticker: ``GET https://api.gemini.com/v1/pubticker/{symbol}`` (ccxt's fetchTickerV1). The last trade price is
  ``last``, a decimal string; its time is ``volume.timestamp`` (epoch ms).
- candles: ``GET https://api.gemini.com/v2/candles/{symbol}/1m``. Gemini takes no start time and answers its
  whole 1-minute window (about the last 24 hours), newest first, rows ``[open time ms, open, high, low, close,
  volume]`` as JSON numbers: closes are re-read from the raw body as Decimal. An older minute is not_found.

The test fixtures for these endpoints follow Gemini's documented shapes; they were written by hand, not
captured live.
"""

from typing import Any

import ccxt

from .ccxt_venue import CcxtVenue


class Gemini(CcxtVenue):
    name = "gemini"
    exchange_class = ccxt.gemini
    markets = {"BTC/USD": "btcusd", "ETH/USD": "ethusd", "SOL/USD": "solusd"}
    # v1 only: ccxt's other choices add the v2 ticker, a second request that carries no last price.
    ccxt_options = {"fetchTickerMethod": "fetchTickerV1"}
    # Gemini names an unknown symbol with reason InvalidSymbol, which ccxt maps to the broader BadRequest.
    error_codes = {"InvalidSymbol": ccxt.BadSymbol}

    def last_price(self, info: dict[str, Any]) -> object:
        return info["last"]

    def candle_closes(self, body: Any) -> list[tuple[int, object]]:
        return [(row[0], row[4]) for row in body]
