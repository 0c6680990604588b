"""Coinbase spot through ccxt's ``coinbase`` exchange (Advanced Trade API): its public market endpoints need
no API key. (ccxt's ``coinbaseexchange``, the former Coinbase Pro API, is public too; ``coinbase`` is the
one Coinbase maintains.)

- ticker: ``GET https://api.coinbase.com/api/v3/brokerage/market/products/{product_id}/ticker?limit=1``: the
  latest trade, whose ``price`` (a decimal string) and ``time`` (RFC 3339) are the last price and its time.
- candles: ``GET https://api.coinbase.com/api/v3/brokerage/market/products/{product_id}/candles
  ?granularity=ONE_MINUTE&start={s}&end={s}`` (epoch seconds); ``{"candles": [{"start", "low", "high",
  "open", "close", "volume"}]}``, every value a string, newest first.

The test fixtures for these endpoints follow Coinbase's documented shapes; they were written by hand, not
captured live.
"""

from typing import Any

import ccxt

from .ccxt_venue import CcxtVenue


class Coinbase(CcxtVenue):
    name = "coinbase"
    exchange_class = ccxt.coinbase
    markets = {"BTC/USD": "BTC-USD", "ETH/USD": "ETH-USD", "SOL/USD": "SOL-USD",
               "BTC/USDC": "BTC-USDC", "ETH/USDC": "ETH-USDC"}
    # v3, the public market-trades endpoint: one request (ccxt's v2 alternative makes three to the prices API).
    ccxt_options = {"fetchTicker": "fetchTickerV3"}

    def last_price(self, info: dict[str, Any]) -> object:
        return info["price"]  # ccxt's info here is the latest trade, not the whole answer

    def candle_closes(self, body: Any) -> list[tuple[int, object]]:
        return [(int(candle["start"]) * 1000, candle["close"]) for candle in body["candles"]]
