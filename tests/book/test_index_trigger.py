"""A stop on the index price, through the database and the price loop's hook: a new spot price queues the
matcher of each continuous contract with an order armed on its mark or index (``book_prices_moved``),
and the matcher fires what the new index crossed, and nothing armed on another source."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.book.services import book_match
from ccp.book.tasks import book_prices_moved
from ccp.clock import utcnow
from ccp.prices.models import SpotPrice, VenueSymbol
from tests.book.test_venue import continuous_future, send, state, trader, trades
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db


def test_a_stop_on_the_index_fires_when_the_price_loop_sees_it_cross(eager_tasks):
    contract = continuous_future()
    maker, me, other = trader(contract), trader(contract), trader(contract)
    VenueSymbol.objects.create(pair=contract.pair, venue="binance", symbol="BTC/USDT")

    def index(price):
        SpotPrice.objects.create(pair=contract.pair, source="binance", price=D(price),
                                 observed_at=utcnow() - timedelta(seconds=1), fetched_at=utcnow())

    index("101")
    send(maker, contract, "buy", "95", "2")
    on_index = send(me, contract, "sell", "94", "1", kind="market", time_in_force="ioc", trigger="stop",
                    trigger_price=D("98"), trigger_source="index")
    on_last = send(other, contract, "sell", "94", "1", kind="market", time_in_force="ioc", trigger="stop",
                   trigger_price=D("98"), trigger_source="last")
    book_match(contract_id=contract.pk, now=utcnow())
    assert state(on_index)[0] == state(on_last)[0] == "untriggered"

    with eager_tasks():
        assert book_prices_moved() == [contract.pk]  # the contract has an order armed on its index
    assert state(on_index)[0] == "untriggered"  # at 101 nothing crossed
    index("97.3")  # 97.5 in ticks of 0.5 (half-even): at or below 98
    with eager_tasks():
        assert book_prices_moved() == [contract.pk]

    assert state(on_index)[:2] == ("filled", D("1"))
    assert trades(contract)[-1][:2] == (D("95"), D("1"))
    assert state(on_last)[:2] == ("filled", D("1"))  # the index stop's trade at 95 is a last price at or below 98
    assert_books_balance()
