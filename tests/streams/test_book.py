"""The public book stream ws/v1/book/<symbol>: a snapshot, then level changes in sequence order."""

import asyncio
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from rest_framework.test import APIClient

from ccp.contracts.models import Contract
from ccp.streams import book_group
from tests.factories import ContractFactory, FundLockFactory
from tests.streams.conftest import (
    QUIET,
    TIMEOUT,
    order_cancel_now,
    order_place,
    order_place_accepted,
    ws_connect,
    ws_refused,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _market():
    """A listed call and two clients with plenty of its collateral (a sell locks up to 50000 a unit)."""
    contract = ContractFactory()
    alice = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000000")).client
    bob = FundLockFactory(currency=contract.collateral, fundlock=Decimal("1000000")).client
    return contract, alice, bob


def _rest_book(symbol: str) -> dict:
    response = APIClient().get(f"/api/v1/contracts/{symbol}/book")
    assert response.status_code == 200, response.content
    return response.json()


def _book_sequence(contract: Contract) -> int:
    return Contract.objects.values_list("book_sequence", flat=True).get(pk=contract.pk)


db = database_sync_to_async
EMPTY_BBO = {"bid": None, "bid_quantity": None, "ask": None, "ask_quantity": None}


async def test_level_changes_follow_the_snapshot_in_sequence_and_match_the_rest_book():
    # given an empty book and a subscriber with its snapshot
    contract, alice, bob = await db(_market)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        assert snapshot == {"type": "book.snapshot", "contract": contract.symbol,
                            "sequence": snapshot["sequence"], "bids": [], "asks": [], "bbo": EMPTY_BBO}
        n = snapshot["sequence"]
        assert n == await db(_book_sequence)(contract)

        # when an order is accepted, then its level appears with the next sequence
        first = await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100",
                                               quantity="1")
        level = {"type": "book.level", "side": "buy", "price": "100"}
        assert await ws.receive_json_from(timeout=TIMEOUT) == {**level, "sequence": n + 1, "quantity": "1",
                                                               "orders": 1}
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "book.bbo"  # the best bid moved (test_bbo)
        # when a second order joins the level, then the level carries the summed quantity
        await db(order_place_accepted)(client=bob, contract=contract, side="buy", price="100", quantity="2.5")
        assert await ws.receive_json_from(timeout=TIMEOUT) == {**level, "sequence": n + 2, "quantity": "3.5",
                                                               "orders": 2}
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "book.bbo"
        # when the first is cancelled, then the level keeps what remains
        await db(order_cancel_now)(order=first)
        last = await ws.receive_json_from(timeout=TIMEOUT)
        assert last == {**level, "sequence": n + 3, "quantity": "2.5", "orders": 1}
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "book.bbo"
        assert await ws.receive_nothing(timeout=QUIET)

    # and the REST book is the state after the last event
    assert await db(_rest_book)(contract.symbol) == {
        "contract": contract.symbol, "sequence": last["sequence"], "asks": [],
        "bids": [{"price": "100", "quantity": "2.5", "orders": 1}],
    }


async def test_a_level_emptied_by_cancel_is_published_with_zero_quantity():
    # given one accepted sell and a subscriber
    contract, alice, _ = await db(_market)()
    order = await db(order_place_accepted)(client=alice, contract=contract, side="sell", price="250", quantity="1")
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        assert snapshot["asks"] == [{"price": "250", "quantity": "1", "orders": 1}]
        # when it is cancelled, then the level is announced empty, so a client can drop it
        await db(order_cancel_now)(order=order)
        assert await ws.receive_json_from(timeout=TIMEOUT) == {
            "type": "book.level", "sequence": snapshot["sequence"] + 1, "side": "sell", "price": "250",
            "quantity": "0", "orders": 0}
    assert (await db(_rest_book)(contract.symbol))["asks"] == []


async def test_snapshot_contains_accepted_orders_best_first_at_the_contracts_sequence():
    # given accepted bids and asks at several prices, and an order still waiting for validation
    contract, alice, bob = await db(_market)()
    for client, side, price, quantity in [(alice, "buy", "100", "1"), (bob, "buy", "120", "0.5"),
                                          (alice, "buy", "100", "2"), (alice, "sell", "300", "1"),
                                          (bob, "sell", "150", "0.25")]:
        await db(order_place_accepted)(client=client, contract=contract, side=side, price=price, quantity=quantity)
    await db(order_place)(client=bob, contract=contract, side="buy", price="130", quantity="1")  # 'received'
    # when a client subscribes
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        # then the snapshot has every accepted order, bids highest first, asks lowest first
        assert snapshot == {
            "type": "book.snapshot", "contract": contract.symbol, "sequence": 5,
            "bids": [{"price": "120", "quantity": "0.5", "orders": 1}, {"price": "100", "quantity": "3", "orders": 2}],
            "asks": [{"price": "150", "quantity": "0.25", "orders": 1}, {"price": "300", "quantity": "1", "orders": 1}],
            "bbo": {"bid": "120", "bid_quantity": "0.5", "ask": "150", "ask_quantity": "0.25"},
        }
        # and its sequence is the contract's: the changes it already contains are not replayed
        assert snapshot["sequence"] == await db(_book_sequence)(contract)
        assert await ws.receive_nothing(timeout=QUIET)
    assert await db(_rest_book)(contract.symbol) == {k: v for k, v in snapshot.items() if k not in ("type", "bbo")}


async def test_events_not_newer_than_the_snapshot_are_dropped():
    # given a subscriber whose snapshot is at sequence 1
    contract, alice, _ = await db(_market)()
    await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 1
        # when the group carries a change the snapshot already holds (published while it was taken), then a newer one
        stale = {"type": "book.level", "sequence": 1, "side": "buy", "price": "100", "quantity": "1", "orders": 1}
        newer = {**stale, "sequence": 2, "quantity": "2", "orders": 2}
        for event in (stale, newer):
            await get_channel_layer().group_send(book_group(contract.pk), {"type": "stream.event", "event": event})
        # then only the newer one is forwarded
        assert await ws.receive_json_from(timeout=TIMEOUT) == newer
        assert await ws.receive_nothing(timeout=QUIET)


async def test_a_bundle_of_events_is_forwarded_one_by_one_without_the_stale_ones():
    contract, alice, _ = await db(_market)()
    await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 1
        stale = {"type": "book.level", "sequence": 1, "side": "buy", "price": "100", "quantity": "1", "orders": 1}
        newer = [{**stale, "sequence": n, "quantity": str(n), "orders": n} for n in (2, 3)]
        trade = {"type": "trade", "contract": contract.symbol, "price": "100", "quantity": "1"}
        await get_channel_layer().group_send(book_group(contract.pk), {
            "type": "stream.events", "events": [stale, *newer, trade]})
        assert [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(3)] == [*newer, trade]
        assert await ws.receive_nothing(timeout=QUIET)


async def test_only_the_subscribed_contracts_changes_arrive():
    # given subscribers to two contracts
    contract, alice, _ = await db(_market)()
    other = await db(ContractFactory)(strike_px=Decimal("110000"))
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws, \
            ws_connect(f"/ws/v1/book/{other.symbol}") as other_ws:
        await ws.receive_json_from(timeout=TIMEOUT)
        await other_ws.receive_json_from(timeout=TIMEOUT)
        # when an order is accepted on the first
        await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
        # then only its subscriber hears of it
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 1
        assert await other_ws.receive_nothing(timeout=QUIET)


async def test_unknown_symbol_is_refused_with_4404():
    await db(ContractFactory)()
    assert await ws_refused("/ws/v1/book/NOPE-USDC-20261225-100000-C") == 4404


async def test_the_stream_is_read_only():
    contract = await db(ContractFactory)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        await ws.receive_json_from(timeout=TIMEOUT)
        await ws.send_json_to({"type": "subscribe"})
        reply = await ws.receive_json_from(timeout=TIMEOUT)
        assert reply["code"] == "read_only" and reply["message"]


async def test_an_idle_subscriber_still_gets_the_next_change():
    # given a subscriber to a quiet book, idle for longer than 5 s
    contract, alice, _ = await db(_market)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 0
        await asyncio.sleep(6)
        # when an order is accepted, then the subscriber still gets the change
        await db(order_place_accepted)(client=alice, contract=contract, side="buy", price="100", quantity="1")
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 1

