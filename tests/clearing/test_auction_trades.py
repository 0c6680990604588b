"""Auction apply books trades: every fill becomes trades summing to it, fills sum to positions,
a second apply or a second booking books nothing more, orders carry their average fill price."""

from collections import defaultdict
from decimal import Decimal as D

import pytest

from ccp.clearing.models import Trade
from ccp.clearing.services import Execution, trades_book
from ccp.matching.models import Auction
from ccp.orders.models import Order
from ccp.risk.models import Position
from tests.conftest import NOW
from tests.matching.test_auction_flow import chains_started, market, place, run_auction  # noqa: F401

pytestmark = pytest.mark.django_db


def traded_by_order() -> dict[int, D]:
    totals: dict[int, D] = defaultdict(D)
    for trade in Trade.objects.all():
        totals[trade.buy_order_id] += trade.quantity
        totals[trade.sell_order_id] += trade.quantity
    return dict(totals)


def test_every_auction_fill_becomes_trades_that_sum_to_it(market):  # noqa: F811
    # given two buyers and two sellers crossing on one contract
    contract, (alice, bob, carol) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "buy", "2050", "0.2")
    place(carol, contract, "sell", "1900", "0.1")
    place(carol, contract, "sell", "2000", "0.4")
    # when the auction runs (every stage twice)
    auction = run_auction(twice=True)
    # then each filled order's trades sum to its fill, at the clearing price, numbered 1..n
    price = D(auction.result_document["prices"][contract.symbol])
    fills = {int(f["order"]): D(f["quantity"]) for f in auction.result_document["fills"]}
    assert fills and traded_by_order() == fills
    trades = list(Trade.objects.order_by("sequence"))
    assert [t.sequence for t in trades] == list(range(1, len(trades) + 1))
    assert {(t.venue, t.venue_ref, t.price, t.aggressor_side, t.executed_at) for t in trades} == {
        ("auction", auction.ref, price, None, auction.applied_at)}
    assert all(t.buy_client_id == t.buy_order.client_id and t.sell_client_id == t.sell_order.client_id
               for t in trades)
    for order in Order.objects.filter(pk__in=fills):
        assert (order.average_fill_price, order.last_fill_at) == (price, auction.applied_at)


def test_a_traders_fills_sum_to_their_position(market):  # noqa: F811
    contract, (alice, bob, carol) = market
    place(alice, contract, "buy", "2100", "0.5")
    place(bob, contract, "sell", "2000", "0.3")
    place(carol, contract, "sell", "2000", "0.1")
    run_auction()
    # a second auction: alice sells some back to carol
    Auction.objects.update(slot=NOW.replace(year=2020))
    place(alice, contract, "sell", "2000", "0.2")
    place(carol, contract, "buy", "2100", "0.2")
    run_auction()
    for client in (alice, bob, carol):
        bought = sum(t.quantity for t in Trade.objects.filter(buy_client=client))
        sold = sum(t.quantity for t in Trade.objects.filter(sell_client=client))
        assert Position.objects.get(client=client, contract=contract).quantity == bought - sold
    # each order's average fill price is its trades' quantity-weighted price
    for order in Order.objects.filter(filled_quantity__gt=0):
        trades = Trade.objects.filter(**{f"{order.side}_order": order})
        assert order.filled_quantity == sum(t.quantity for t in trades)
        assert order.average_fill_price == sum(t.price * t.quantity for t in trades) / order.filled_quantity
    sequences = list(Trade.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1)) and len(set(Trade.objects.values_list("venue_ref"))) == 2


def test_booking_the_same_trades_twice_has_one_effect(market):  # noqa: F811
    contract, (alice, bob, _) = market
    buy = place(alice, contract, "buy", "2100", "0.5")
    sell = place(bob, contract, "sell", "2000", "0.5")
    execution = Execution(contract.pk, D("2050"), D("0.5"), buy.pk, alice.pk, sell.pk, bob.pk)
    first = trades_book(venue="auction", venue_ref="auction-x", executions=[execution], now=NOW)
    again = trades_book(venue="auction", venue_ref="auction-x", executions=[execution], now=NOW)
    assert len(first) == 1 and again == []
    assert Trade.objects.count() == 1
    # the same orders in another venue event are another trade, next in the contract's sequence
    other = trades_book(venue="auction", venue_ref="auction-y", executions=[execution], now=NOW)
    assert [row["sequence"] for row in other] == [2]
