"""celery_app's guard for kombu 5.7: a worker whose broker went away must reconnect, not exit."""

import pytest
from kombu import Connection, Exchange, Queue

import celery_app  # noqa: F401 - installs the guard, as the worker does
from tests.processes import bin_stack, free_port


@pytest.fixture
def redis_url():
    redis = bin_stack().Redis(free_port())
    redis.start()
    yield redis.url()
    redis.stop()


def test_closing_a_collected_connection_with_unacked_messages_is_a_connection_error(redis_url):
    # given a consumer holding an unacknowledged message on its channel (acks_late, task running)
    connection = Connection(redis_url)
    queue = Queue("ccp-test", Exchange("ccp-test"), "ccp-test")
    with connection.Producer() as producer:
        producer.publish({"task": 1}, exchange=queue.exchange, routing_key="ccp-test", declare=[queue])
    channel = connection.default_channel
    connection.Consumer([queue], callbacks=[lambda body, message: None], channel=channel).consume()
    connection.drain_events(timeout=5)
    assert len(channel.qos._delivered) == 1
    # when Redis went away, and the worker's consumer collected the connection (its transport forgets
    # its client: kombu's Connection._do_close_transport) before closing the channel, as its traceback shows
    connection.transport.client = None
    # then closing does not raise AttributeError ('NoneType' object has no attribute 'hostname'), which
    # escaped the consumer's error handling and made the worker exit
    connection.close()
    assert channel.closed
