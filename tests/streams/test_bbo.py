"""The best bid and offer on the book stream: in the snapshot, and a ``book.bbo`` after each change
that moved it, carrying that change's sequence; a change behind the best sends none."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from ccp.orders.selectors import books_bbo
from tests.factories import ContractFactory, FundLockFactory
from tests.streams.conftest import TIMEOUT, order_cancel_now, order_place_accepted, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
db = database_sync_to_async
EMPTY = {"bid": None, "bid_quantity": None, "ask": None, "ask_quantity": None}


def _market():
    contract = ContractFactory()
    alice = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000000")).client
    bob = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000000")).client
    return contract, alice, bob


def level(side: str, price: str, quantity: str, orders: int, sequence: int) -> dict:
    return {"type": "book.level", "sequence": sequence, "side": side, "price": price, "quantity": quantity,
            "orders": orders}


def bbo(sequence: int, bid=None, bid_quantity=None, ask=None, ask_quantity=None) -> dict:
    return {"type": "book.bbo", "sequence": sequence, "bid": bid, "bid_quantity": bid_quantity, "ask": ask,
            "ask_quantity": ask_quantity}


async def test_the_snapshot_carries_the_best_bid_and_offer():
    # given an empty book, a subscriber sees no best on either side
    contract, alice, bob = await db(_market)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["bbo"] == EMPTY
    # given bids at two prices and asks at two
    for client, side, price, quantity in [(alice, "buy", "100", "1"), (bob, "buy", "120", "0.5"),
                                          (alice, "buy", "120", "2"), (bob, "sell", "300", "1"),
                                          (alice, "sell", "150", "0.25")]:
        await db(order_place_accepted)(client=client, contract=contract, side=side, price=price, quantity=quantity)
    # when a client subscribes, then the snapshot's bbo is the highest bid and lowest ask with their quantities
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        assert snapshot["bbo"] == {"bid": "120", "bid_quantity": "2.5", "ask": "150", "ask_quantity": "0.25"}
        assert snapshot["bbo"]["bid"] == snapshot["bids"][0]["price"]


async def test_a_bbo_follows_each_change_that_moved_the_best_and_none_follows_a_change_behind_it():
    contract, alice, bob = await db(_market)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        n = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
        # when a first bid arrives, then its level, then the bbo with the level's sequence
        first = await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "100", "1", 1, n + 1)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 1, "100", "1")
        # when a bid arrives behind the best, then its level only (the next message is the next change's)
        await db(order_place_accepted)(client=bob, contract=contract, side="buy", price="99", quantity="4")
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "99", "4", 1, n + 2)
        # when an ask arrives, then the offer side appears
        await db(order_place_accepted)(client=bob, contract=contract, side="sell", price="105", quantity="2")
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("sell", "105", "2", 1, n + 3)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 3, "100", "1", "105", "2")
        # when the best bid's quantity grows, then the bbo carries it
        await db(order_place_accepted)(client=bob, contract=contract, side="buy", price="100", quantity="0.5")
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "100", "1.5", 2, n + 4)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 4, "100", "1.5", "105", "2")
        # when an ask behind the best leaves, then no bbo
        behind = await db(order_place_accepted)(client=alice, contract=contract, side="sell", price="110",
                                                quantity="1")
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("sell", "110", "1", 1, n + 5)
        await db(order_cancel_now)(order=behind)
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("sell", "110", "0", 0, n + 6)
        # when part of the best bid leaves, then the bbo's quantity drops
        await db(order_cancel_now)(order=first)
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "100", "0.5", 1, n + 7)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 7, "100", "0.5", "105", "2")


async def test_when_the_best_level_empties_the_next_level_becomes_the_best_and_an_empty_side_is_null():
    contract, alice, bob = await db(_market)()
    best = await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
    second = await db(order_place_accepted)(client=bob, contract=contract, side="buy", price="90", quantity="3")
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        n = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
        await db(order_cancel_now)(order=best)
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "100", "0", 0, n + 1)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 1, "90", "3")
        await db(order_cancel_now)(order=second)
        assert await ws.receive_json_from(timeout=TIMEOUT) == level("buy", "90", "0", 0, n + 2)
        assert await ws.receive_json_from(timeout=TIMEOUT) == bbo(n + 2)


def _books_bbo_of_two_contracts():
    one, alice, bob = _market()
    two, empty = (ContractFactory(pair=one.pair, strike_px=Decimal(strike)) for strike in ("90000", "110000"))
    for contract, client, side, price, quantity in [(one, alice, "buy", "100", "1"), (one, bob, "buy", "100", "2"),
                                                    (one, bob, "sell", "130", "1"), (two, alice, "sell", "80", "1"),
                                                    (two, alice, "sell", "70", "5")]:
        order_place_accepted(client=client, contract=contract, side=side, price=price, quantity=quantity)
    return one, two, empty, books_bbo(contract_ids=[one.pk, two.pk, empty.pk])


async def test_books_bbo_reads_each_contract_s_best_levels():
    one, two, empty, found = await db(_books_bbo_of_two_contracts)()
    assert found == {
        one.pk: {"bid": Decimal("100"), "bid_quantity": Decimal("3"), "ask": Decimal("130"),
                 "ask_quantity": Decimal("1")},
        two.pk: {"bid": None, "bid_quantity": None, "ask": Decimal("70"), "ask_quantity": Decimal("5")},
        empty.pk: {"bid": None, "bid_quantity": None, "ask": None, "ask_quantity": None},
    }
