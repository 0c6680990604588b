"""The public trade stream ws/v1/trades/<symbol>: the last sequence, then every trade booked after it,
in sequence order, as GET /contracts/<symbol>/trades?after_sequence= shows them; an auction's 30,000
trades all arrive."""

from decimal import Decimal as D

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework.test import APIClient

from ccp.clearing.services import Execution, trades_book
from ccp.marketdata.models import Candle
from ccp.streams import trades_group
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, ReceivedOrderFactory
from tests.marketdata.conftest import book
from tests.streams.conftest import QUIET, TIMEOUT, close_thread_connections, ws_connect, ws_refused  # noqa: F401

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
db = database_sync_to_async


def _traded_contract():
    contract = ContractFactory()
    book(contract, [("100", "1"), ("101", "2")], at=NOW, ref="auction-1")
    return contract


def _rest_after(symbol: str, after_sequence: int, **query) -> dict:
    response = APIClient().get(f"/api/v1/contracts/{symbol}/trades", {"after_sequence": after_sequence, **query})
    assert response.status_code == 200, response.json()
    return response.json()


async def test_the_snapshot_sequence_then_each_new_trade_in_order_as_rest_shows_it():
    # given a contract with two trades and a subscriber
    contract = await db(_traded_contract)()
    async with ws_connect(f"/ws/v1/trades/{contract.symbol}") as ws:
        snapshot = await ws.receive_json_from(timeout=TIMEOUT)
        assert snapshot == {"type": "trades.snapshot", "contract": contract.symbol, "sequence": 2}
        # when an auction books three more
        booked = await db(book)(contract, [("102", "0.5"), ("102", "1"), ("99.5", "3")], at=NOW, ref="auction-2")
        # then they arrive in sequence order, nothing else
        events = [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
        assert await ws.receive_nothing(timeout=QUIET)
    assert [e["sequence"] for e in events] == [3, 4, 5]
    assert events[2] == {"type": "trade", "contract": contract.symbol, "sequence": 5, "id": booked[2]["id"],
                         "price": "99.5", "quantity": "3", "aggressor_side": None,
                         "executed_at": "2026-11-21T09:30:00Z", "venue": "auction", "venue_ref": "auction-2"}
    # and a client that missed them reads the same trades from the snapshot's sequence on
    rest = await db(_rest_after)(contract.symbol, snapshot["sequence"])
    assert rest["results"] == [{k: v for k, v in e.items() if k not in ("type", "contract")} for e in events]
    assert rest["next_cursor"] is None


async def test_trades_not_newer_than_the_snapshot_are_dropped():
    contract = await db(_traded_contract)()
    async with ws_connect(f"/ws/v1/trades/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 2
        # when the group carries a trade the snapshot counts (published while it was read), then a newer one
        stale = {"type": "trade", "contract": contract.symbol, "sequence": 2}
        newer = {**stale, "sequence": 3}
        await get_channel_layer().group_send(trades_group(contract.pk), {
            "type": "stream.events", "events": [stale, newer]})
        # then only the newer one is forwarded
        assert await ws.receive_json_from(timeout=TIMEOUT) == newer
        assert await ws.receive_nothing(timeout=QUIET)


async def test_only_the_subscribed_contracts_trades_arrive():
    contract = await db(_traded_contract)()
    other = await db(ContractFactory)(strike_px=D("110000"))
    async with ws_connect(f"/ws/v1/trades/{other.symbol}") as ws:
        assert await ws.receive_json_from(timeout=TIMEOUT) == {
            "type": "trades.snapshot", "contract": other.symbol, "sequence": 0}
        await db(book)(contract, [("100", "1")], at=NOW, ref="auction-2")
        assert await ws.receive_nothing(timeout=QUIET)


def _book_then_fail(contract) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        book(contract, [("100", "1")], at=NOW, ref="auction-9")
        raise RuntimeError("the auction's apply failed after booking")


async def test_a_rolled_back_booking_sends_nothing():
    contract = await db(ContractFactory)()
    async with ws_connect(f"/ws/v1/trades/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 0
        await db(_book_then_fail)(contract)
        assert await ws.receive_nothing(timeout=QUIET)
        # the next committed booking is sequence 1 again
        await db(book)(contract, [("101", "1")], at=NOW, ref="auction-10")
        event = await ws.receive_json_from(timeout=TIMEOUT)
        assert (event["sequence"], event["price"]) == (1, "101")
        assert await ws.receive_nothing(timeout=QUIET)


async def test_unknown_symbol_is_refused_with_4404():
    assert await ws_refused("/ws/v1/trades/NOPE-USDC-20261225-100000-C") == 4404


def _auction_of(contract, count: int) -> list[dict]:
    """One auction's ``count`` trades at one price and time: each of 175 buy orders against each of
    175 sell orders (real orders: a trade is unique per (auction, buy order, sell order))."""
    buyer, seller = ClientFactory(), ClientFactory()
    buys = [ReceivedOrderFactory(client=buyer, contract=contract) for _ in range(175)]
    sells = [ReceivedOrderFactory(client=seller, contract=contract, side="sell") for _ in range(175)]
    executions = [Execution(contract.pk, D("100"), D("0.01"), buy.pk, buyer.pk, sell.pk, seller.pk)
                  for buy in buys for sell in sells][:count]
    return trades_book(venue="auction", venue_ref="auction-big", executions=executions, now=NOW)


def _candles(contract) -> list[tuple]:
    return list(Candle.objects.filter(contract=contract).order_by("interval")
                .values_list("interval", "volume", "trade_count", "first_sequence", "last_sequence"))


async def test_an_auction_of_30000_trades_reaches_a_subscriber_whole_and_in_order():
    contract = await db(ContractFactory)()
    async with ws_connect(f"/ws/v1/trades/{contract.symbol}") as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == 0
        # when one auction books 30,000 trades on the contract
        booked = await db(_auction_of)(contract, 30000)
        # then the subscriber gets 30,000 trade events, sequences 1 to 30,000, then nothing
        sequences = [(await ws.receive_json_from(timeout=TIMEOUT))["sequence"] for _ in range(30000)]
        assert await ws.receive_nothing(timeout=QUIET)
    assert len(booked) == 30000
    assert sequences == list(range(1, 30001))
    # and the candles are one row per interval
    assert await db(_candles)(contract) == [(interval, D("300"), 30000, 1, 30000)
                                            for interval in ("1d", "1h", "1m", "5m")]
