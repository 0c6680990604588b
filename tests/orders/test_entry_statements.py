"""Order entry's statements: the private stream numbers of the orders entered are taken by the statement that
inserts them, not by an UPDATE of their own (one round trip less per order; the numbers are the same:
tests/streams/test_private_sequence.py follows them on the stream)."""

import tempfile

import psycopg
import pytest
import redis
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ccp.accounts.models import Client
from ccp.book.tasks import book_queue
from ccp.contracts.models import Contract, TradingMode
from ccp.streams import client_group

pytestmark = pytest.mark.django_db


def order(contract, client_order_id: str) -> dict:
    return {"client_order_id": client_order_id, "contract": contract.symbol, "side": "buy", "kind": "limit",
            "price": "100", "quantity": "1"}


def counter(client: Client) -> int:
    return Client.objects.values_list("stream_sequence", flat=True).get(pk=client.pk)


def client_updates(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().startswith("UPDATE accounts_client")]


def test_an_orders_stream_number_is_taken_by_its_insert(api_as, trader, contract, settings):
    settings.CCP_THROTTLE_ORDERS = ""
    api = api_as(trader)
    before = counter(trader)
    with CaptureQueriesContext(connection) as queries:
        assert api.post("/api/v1/orders", order(contract, "a"), format="json").status_code == 202
        assert api.post("/api/v1/orders", order(contract, "b"), format="json").status_code == 202
    assert client_updates(queries) == []
    assert counter(trader) == before + 2
    # the same order again inserts nothing and numbers nothing
    assert api.post("/api/v1/orders", order(contract, "a"), format="json").status_code == 200
    assert counter(trader) == before + 2


def test_a_batchs_stream_numbers_are_taken_by_its_insert_one_per_order_inserted(api_as, trader, contract, settings):
    settings.CCP_THROTTLE_ORDERS = ""
    api = api_as(trader)
    assert api.post("/api/v1/orders", order(contract, "old"), format="json").status_code == 202
    before = counter(trader)
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/v1/orders/batch", {"orders": [order(contract, f"o-{i}") for i in range(6)]
                                                     + [order(contract, "old")]}, format="json")
    assert [r["status"] for r in response.json()["results"]] == [202] * 6 + [200]
    assert client_updates(queries) == []
    assert counter(trader) == before + 6


@pytest.mark.django_db(transaction=True)
def test_a_single_order_outside_a_transaction_is_committed_by_its_insert_alone(api_as, trader, contract, settings):
    """Its one write statement commits by itself: no BEGIN, no COMMIT round trip; the order, its history row
    and its stream number are committed (another connection sees them) when the answer comes."""
    settings.CCP_THROTTLE_ORDERS = ""
    api = api_as(trader)
    before = counter(trader)
    connection.ensure_connection()
    with tempfile.TemporaryFile() as trace:
        connection.connection.pgconn.trace(trace.fileno())
        try:
            response = api.post("/api/v1/orders", order(contract, "alone"), format="json")
        finally:
            connection.connection.pgconn.untrace()
        trace.seek(0)
        sent = trace.read()
    assert response.status_code == 202
    assert b"BEGIN" not in sent and b"COMMIT" not in sent
    db = connection.settings_dict
    with psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"]) as other:
        stored = other.execute("SELECT o.state, count(h.id), c.stream_sequence FROM orders_order AS o "
                               "JOIN orders_orderstatehistory AS h ON h.order_id = o.id "
                               "JOIN accounts_client AS c ON c.id = o.client_id "
                               "WHERE o.client_order_id = 'alone' GROUP BY o.state, c.stream_sequence").fetchall()
    assert stored == [("received", 1, before + 1)]


@pytest.mark.django_db(transaction=True)
def test_a_single_orders_stream_message_and_matcher_flag_share_one_redis_round_trip(api_as, trader, contract,
                                                                                     settings, monkeypatch):
    """Outside a transaction the order is committed by its insert: its private stream message and its continuous
    contract's matcher flag then go to Redis in one round trip (the token's revocation epoch, read before, is the
    other); the stream message comes first, and a flag not set already sends the matcher's task."""
    settings.CCP_THROTTLE_ORDERS = ""
    Contract.objects.filter(pk=contract.pk).update(trading_mode=TradingMode.CONTINUOUS)
    api = api_as(trader)
    store, broker = redis.Redis.from_url(settings.REDIS_URL), redis.Redis.from_url(settings.CELERY_BROKER_URL)
    flag, queue = f"ccp:book-match-queued:{book_queue(contract.pk)}", book_queue(contract.pk)
    layer = get_channel_layer()
    listener = store.pubsub()
    listener.subscribe(f"{settings.CHANNEL_LAYERS['default']['CONFIG'].get('prefix', 'asgi')}__group__"
                       f"{client_group(trader.pk)}")
    listener.get_message(timeout=1)  # the subscription's confirmation
    round_trips = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(connection, command, check_health=True):
        round_trips.append(command)
        return send(connection, command, check_health)

    store.delete(flag)
    broker.delete(queue)
    try:
        assert api.post("/api/v1/orders", order(contract, "warm"), format="json").status_code == 202
        broker.delete(queue)
        store.set(flag, 1, ex=60)  # when a matcher task is queued already
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        assert api.post("/api/v1/orders", order(contract, "a"), format="json").status_code == 202
        assert len(round_trips) == 2  # the revocation epoch; the stream message with the flag
        assert broker.llen(queue) == 0  # no second task
        store.delete(flag)  # when none is queued: the flag is set and the task sent
        assert api.post("/api/v1/orders", order(contract, "b"), format="json").status_code == 202
        assert store.get(flag) == b"1" and broker.llen(queue) == 1
        events = []
        while (message := listener.get_message(timeout=1)) is not None:
            events.extend(layer.deserialize(message["data"])["events"])
        assert [(e["order"]["client_order_id"], e["order"]["state"]) for e in events] == [
            ("warm", "received"), ("a", "received"), ("b", "received")]
        assert [e["sequence"] for e in events] == [events[0]["sequence"] + k for k in range(3)]
    finally:
        listener.close()
        store.delete(flag)
        broker.delete(queue)
