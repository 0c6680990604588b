"""The auction's price rule inside the interval of valid uniform prices: a stale last price does not
hand a lone crossing pair's whole surplus to one side (issue 11: a bid at 150 paid 150 to the only
offer, at 9.7, because the last clearing price was 150)."""

from decimal import Decimal as D

import pytest

from ccp.prices.models import ReferencePrice, ReferencePriceKind
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.matching.test_auction_flow import chains_started, place, run_auction  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_a_lone_crossing_pair_trades_at_the_middle_of_its_limits_not_at_the_last_price():
    # given a call on a 0.1 tick whose last auction cleared at 150
    contract = ContractFactory(tick_size=D("0.1"))
    ReferencePrice.objects.create(contract=contract, kind=ReferencePriceKind.CLEARING, price=D("150"), at=NOW,
                                  auction_ref="auction-0")
    buyer, seller = (FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client for _ in range(2))
    place(buyer, contract, "buy", "150", "1")
    place(seller, contract, "sell", "9.7", "1")
    # when they meet in an auction
    auction = run_auction()
    # then the price is the middle of [9.7, 150] on the tick (79.85 -> 79.8, the lower on a half tick),
    # not the last price, and the input document names no reference price
    assert auction.result_document["prices"] == {contract.symbol: "79.8"}
    assert [c["reference_price"] for c in auction.input_document["contracts"]] == [None]


def test_a_future_clears_nearest_its_mark_when_the_pair_has_a_fresh_index():
    # given a future whose pair's venues quote 100180, 100200 and 100260 (index: their median, 100200)
    from datetime import timedelta

    from ccp.clock import utcnow
    from ccp.prices.models import SpotPrice, VenueSymbol

    future = ContractFactory(kind="future", strike_px=None, tick_size=D("10"))
    for venue, price in (("gemini", "100180"), ("coinbase", "100200"), ("binance", "100260")):
        VenueSymbol.objects.create(pair=future.pair, venue=venue, symbol="BTC/USD")
        # the auction's stages run at the real time (run_auction): fresh then
        SpotPrice.objects.create(pair=future.pair, source=venue, price=D(price),
                                 observed_at=utcnow() - timedelta(seconds=5), fetched_at=utcnow())
    buyer, seller = (FundLockFactory(currency=future.collateral, fundlock=D("1000000")).client for _ in range(2))
    place(buyer, future, "buy", "101000", "1")
    place(seller, future, "sell", "100000", "1")
    # when they meet in an auction
    auction = run_auction()
    # then the price is the mark (inside [100000, 101000]), not the middle 100500, and the input keeps it
    assert auction.result_document["prices"] == {future.symbol: "100200"}
    assert [c["reference_price"] for c in auction.input_document["contracts"]] == ["100200"]


def test_a_future_without_a_fresh_index_clears_at_the_middle():
    future = ContractFactory(kind="future", strike_px=None, tick_size=D("10"))
    buyer, seller = (FundLockFactory(currency=future.collateral, fundlock=D("1000000")).client for _ in range(2))
    place(buyer, future, "buy", "101000", "1")
    place(seller, future, "sell", "100000", "1")
    assert run_auction().result_document["prices"] == {future.symbol: "100500"}
