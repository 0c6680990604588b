"""The matcher gives its engine the mark and index only when an order may read them (``Book.watching``,
kept between batches instead of a scan of every resting order each batch): with the engine kept in memory
between committed batches, a stop on the mark placed in an earlier batch, and a leg on the mark that an
entry armed as it filled, each fire on a later batch that brings no order."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.book import services
from ccp.book.services import book_match
from ccp.book.versions import book_version
from ccp.clock import utcnow
from ccp.prices.models import SpotPrice, VenueSymbol
from tests.book.test_triggers import leg, legs
from tests.book.test_venue import continuous_future, send, state, trader
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(django_capture_on_commit_callbacks):
    """One matcher batch, committed as the matcher task commits it: the engine is kept only then."""

    def run(contract) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            book_match(contract_id=contract.pk, now=utcnow())
        kept = services._BOOKS.get(contract.pk)
        assert kept is not None and kept.version == book_version(contract.pk)  # the next batch is not a rebuild

    return run


@pytest.fixture
def index():
    def set_index(contract, price: str) -> None:
        SpotPrice.objects.create(pair=contract.pair, source="binance", price=D(price),
                                 observed_at=utcnow() - timedelta(seconds=1), fetched_at=utcnow())

    return set_index


def test_a_stop_on_the_mark_fires_on_a_batch_without_orders(batch, index):
    contract = continuous_future()
    me, bidder = trader(contract), trader(contract)
    VenueSymbol.objects.create(pair=contract.pair, venue="binance", symbol="BTC/USDT")
    index(contract, "101")
    send(bidder, contract, "buy", "95", "1")
    stop = send(me, contract, "sell", "94", "1", kind="market", time_in_force="ioc", trigger="stop",
                trigger_price=D("98"), trigger_source="mark")
    batch(contract)
    assert state(stop)[0] == "untriggered"
    index(contract, "97.3")  # mark 97.5 in ticks of 0.5: at or below 98
    batch(contract)
    assert state(stop)[:2] == ("filled", D("1"))
    assert_books_balance()


def test_a_leg_on_the_mark_armed_in_memory_fires_on_a_batch_without_orders(batch, index):
    contract = continuous_future()
    me, maker, bidder = trader(contract), trader(contract), trader(contract)
    VenueSymbol.objects.create(pair=contract.pair, venue="binance", symbol="BTC/USDT")
    index(contract, "101")
    send(bidder, contract, "buy", "95", "1")
    entry = send(me, contract, "buy", "100", "1", attached={"sl": leg("98", "94", source="mark")})
    batch(contract)  # the entry rests, carrying its stop-loss on the mark
    send(maker, contract, "sell", "100", "1")
    batch(contract)  # the entry fills and leaves the book; its leg arms
    stop_loss = legs(entry)["sl"]
    assert state(stop_loss)[0] == "untriggered"
    index(contract, "97.3")
    batch(contract)
    assert state(stop_loss)[:2] == ("filled", D("1"))
    assert_books_balance()
