"""Binance spot through ccxt's ``binance`` exchange: public REST market data, no API key.

- ticker: ``GET https://api.binance.com/api/v3/ticker/24hr?symbol={symbol}``. The last trade price is
  ``lastPrice``, a decimal string; ccxt stamps it with ``closeTime`` (epoch ms).
- candles: ``GET https://api.binance.com/api/v3/klines?interval=1m&limit=1&symbol={symbol}&startTime={ms}``:
  the first candle opening at or after startTime, rows ``[open time ms, "open", "high", "low", "close",
  "volume", close time ms, ...]``.

The test fixtures for these endpoints follow Binance's documented shapes; they were written by hand, not
captured live.
"""

from typing import Any

import ccxt

from .ccxt_venue import CcxtVenue


class Binance(CcxtVenue):
    name = "binance"
    exchange_class = ccxt.binance
    markets = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT",
               "BTC/USDC": "BTCUSDC", "ETH/USDC": "ETHUSDC"}
    ccxt_options = {"defaultType": "spot"}  # the spot API, not the futures ones ccxt's binance also speaks

    def last_price(self, info: dict[str, Any]) -> object:
        return info["lastPrice"]

    def candle_closes(self, body: Any) -> list[tuple[int, object]]:
        return [(row[0], row[4]) for row in body]
