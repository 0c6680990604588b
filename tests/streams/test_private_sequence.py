"""The private stream's sequence: every message after the ``hello`` carries the client's next number,
1, 2, 3, ... across transactions, numbered in the committing transaction, so a rollback leaves no
gap and a reconnecting client can tell what it missed."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from ccp.accounts.models import Client
from ccp.streams import client_group, client_stream_publish, client_stream_publish_many
from tests.factories import ClientFactory, ContractFactory, FundLockFactory
from tests.streams.conftest import QUIET, TIMEOUT, api_token_create, order_accept, order_place, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
db = database_sync_to_async
PATH = "/ws/v1/private"


def _trader():
    contract = ContractFactory()
    client = ClientFactory()
    FundLockFactory(client=client, currency=contract.collateral, fundlock=Decimal("1000000"))
    return contract, client, [(b"authorization", f"Bearer {api_token_create(client)}".encode())]


def _counter(client: Client) -> int:
    return Client.objects.values_list("stream_sequence", flat=True).get(pk=client.pk)


async def test_messages_are_numbered_consecutively_across_transactions():
    contract, client, headers = await db(_trader)()
    async with ws_connect(PATH, headers=headers) as ws:
        hello = await ws.receive_json_from(timeout=TIMEOUT)
        n = hello["sequence"]
        # when an order is placed (one transaction, one message), then accepted (another: order and balance)
        order = await db(order_place)(client=client, contract=contract, side="buy", price="100", quantity="1")
        await db(order_accept)(order=order)
        messages = [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
        # then the three carry the next three numbers, in order
        assert [(m["type"], m["sequence"]) for m in messages] == [("order", n + 1), ("order", n + 2),
                                                                   ("balance", n + 3)]
        assert [m["order"]["state"] for m in messages[:2]] == ["received", "accepted"]
        assert await ws.receive_nothing(timeout=QUIET)
    assert await db(_counter)(client) == n + 3


def _rolled_back_then_committed(client: Client) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        client_stream_publish(client.pk, {"type": "note", "n": "undone"})
        raise RuntimeError("the transaction fails")
    with transaction.atomic():
        client_stream_publish(client.pk, {"type": "note", "n": "kept"})


async def test_a_rolled_back_transaction_leaves_no_gap():
    _, client, headers = await db(_trader)()
    async with ws_connect(PATH, headers=headers) as ws:
        n = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
        # when a transaction that published rolls back, and the next one commits
        await db(_rolled_back_then_committed)(client)
        # then the committed message takes the number the rolled-back one had taken
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "note", "n": "kept", "sequence": n + 1}
        assert await ws.receive_nothing(timeout=QUIET)
    assert await db(_counter)(client) == n + 1


def _savepoint_rolled_back(client: Client, other: Client) -> None:
    with transaction.atomic():
        client_stream_publish_many([(client.pk, {"type": "note", "n": "a"}), (other.pk, {"type": "note", "n": "x"}),
                                    (client.pk, {"type": "note", "n": "b"})])
        with pytest.raises(RuntimeError), transaction.atomic():
            client_stream_publish(client.pk, {"type": "note", "n": "undone"})
            raise RuntimeError("the savepoint rolls back")
        client_stream_publish(client.pk, {"type": "note", "n": "c"})


async def test_a_rolled_back_savepoint_takes_its_numbers_and_its_messages_with_it():
    _, client, headers = await db(_trader)()
    other = await db(ClientFactory)()
    async with ws_connect(PATH, headers=headers) as ws:
        n = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
        await db(_savepoint_rolled_back)(client, other)
        received = [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
        assert [(m["n"], m["sequence"]) for m in received] == [("a", n + 1), ("b", n + 2), ("c", n + 3)]
        assert await ws.receive_nothing(timeout=QUIET)
    assert await db(_counter)(other) == 1


async def test_a_reconnecting_client_sees_how_many_messages_it_missed():
    contract, client, headers = await db(_trader)()
    async with ws_connect(PATH, headers=headers) as ws:
        before = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
    # when a message is published while the client is away
    order = await db(order_place)(client=client, contract=contract, side="sell", price="100", quantity="1")
    # then the next hello says so (its sequence is one more), and the following messages go on from it
    async with ws_connect(PATH, headers=headers) as ws:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["sequence"] == before + 1
        await db(order_accept)(order=order)
        assert [(await ws.receive_json_from(timeout=TIMEOUT))["sequence"] for _ in range(2)] == [before + 2,
                                                                                                  before + 3]


async def test_a_message_numbered_before_the_hello_is_not_forwarded():
    _, client, headers = await db(_trader)()
    async with ws_connect(PATH, headers=headers) as ws:
        n = (await ws.receive_json_from(timeout=TIMEOUT))["sequence"]
        # when the group carries a message the hello already counts (committed while connecting), then a newer one
        for sequence in (n, n + 1):
            await get_channel_layer().group_send(client_group(client.pk), {
                "type": "stream.event", "event": {"type": "note", "sequence": sequence}})
        # then only the newer one is forwarded
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "note", "sequence": n + 1}
        assert await ws.receive_nothing(timeout=QUIET)
