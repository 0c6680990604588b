"""An auction's trades reach the candles once, even when every stage of the auction runs twice."""

from decimal import Decimal as D

import pytest

from ccp.clearing.models import Trade
from ccp.marketdata.models import Candle
from ccp.marketdata.selectors import stats_list
from tests.matching.test_auction_flow import chains_started, market, place, run_auction  # noqa: F401

pytestmark = pytest.mark.django_db


def test_an_auction_run_twice_counts_its_trades_once_in_the_candles(market):  # noqa: F811
    # given two buyers and two sellers crossing on one contract
    contract, (alice, bob, carol) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "buy", "2050", "0.2")
    place(carol, contract, "sell", "1900", "0.1")
    place(carol, contract, "sell", "2000", "0.4")
    # when the auction runs (every stage twice)
    auction = run_auction(twice=True)
    # then each interval has one candle of all its trades at the clearing price
    price = D(auction.result_document["prices"][contract.symbol])
    trades = list(Trade.objects.filter(contract=contract).order_by("sequence"))
    assert len(trades) >= 2
    volume = sum(t.quantity for t in trades)
    assert sorted(Candle.objects.filter(contract=contract).values_list(
        "interval", "open", "high", "low", "close", "volume", "trade_count", "first_sequence", "last_sequence")) == [
        (interval, price, price, price, price, volume, len(trades), 1, len(trades))
        for interval in ("1d", "1h", "1m", "5m")]
    # and the 24 h statistics count them
    stats = stats_list(contracts=[contract], now=auction.applied_at)[0]
    assert (stats.last_price, stats.volume, stats.trade_count, stats.change) == (price, volume, len(trades), D(0))
