"""An applied auction reaches subscribers: trade report and book changes on the public stream, fills,
order states and balances on each client's private stream."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as db

from ccp.clearing.models import Trade
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.streams.conftest import api_token_create, order_place_accepted, receive_until, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _market():
    contract = ContractFactory()
    alice, bob = (FundLockFactory(currency=contract.collateral, fundlock="100000").client for _ in range(2))
    order_place_accepted(client=alice, contract=contract, side="buy", price="2100", quantity="0.5")
    order_place_accepted(client=bob, contract=contract, side="sell", price="2000", quantity="0.3")
    return contract, alice, api_token_create(alice)


def _run_auction(contract):
    auction = auction_open(pair=contract.pair, now=NOW, interval=timedelta(seconds=10))
    for stage in (auction_close, auction_solve, auction_apply):
        kwargs = {"settings": auction_settings()} if stage is auction_close else {}
        stage(auction_id=auction.pk, now=NOW, **kwargs)
    return auction


async def test_subscribers_see_the_auction_clear():
    contract, alice, token = await db(_market)()
    async with ws_connect(f"/ws/v1/book/{contract.symbol}") as book, \
            ws_connect("/ws/v1/private", [(b"authorization", f"Bearer {token}".encode())]) as private:
        snapshot = await book.receive_json_from(timeout=5)
        await private.receive_json_from(timeout=5)  # hello
        await db(_run_auction)(contract)
        public = await receive_until(book, lambda m: m["type"] == "trade")
        levels = [m for m in public if m["type"] == "book.level"]
        assert [m["sequence"] for m in levels] == list(range(snapshot["sequence"] + 1,
                                                             snapshot["sequence"] + 1 + len(levels)))
        assert {(m["side"], m["price"], m["quantity"]) for m in levels} == {("buy", "2100", "0.2"),
                                                                            ("sell", "2000", "0")}
        assert public[-1] | {"auction": None} == {"type": "trade", "auction": None, "contract": contract.symbol,
                                                  "price": "2100", "quantity": "0.3", "first_sequence": 1,
                                                  "last_sequence": 1}
        mine = await receive_until(private, lambda m: m["type"] == "auction")
        kinds = [event["type"] for event in mine[-1]["events"]]
        assert kinds == ["fill", "order", "position", "balance"]
        fill, order, position, balance = mine[-1]["events"]
        assert position["position"] == {"contract": contract.symbol, "quantity": "0.3", "entry_price": "2100",
                                        "realised_pnl": "0"}
        assert (fill["price"], fill["quantity"]) == ("2100", "0.3")
        assert fill["trades"] == await db(lambda: list(Trade.objects.values_list("id", flat=True)))()
        assert (order["order"]["average_fill_price"], order["order"]["last_fill_at"]) == ("2100",
                                                                                          "2026-11-21T09:30:00Z")
        assert (order["order"]["state"], order["order"]["filled_quantity"]) == ("partially_filled", "0.3")
        assert balance["balance"]["settle_value"] == "-630"
