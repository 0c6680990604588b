"""A WebSocket handshake the server refuses is answered in the one error shape (``ccp.server.WebSocketProtocol``):
websockets answered text/plain, and did not answer at all a request line or headers over its limits (the
connection hung, the refusal queued and never sent)."""

import socket

import pytest

from tests.edge.conftest import error_of

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


def handshake(port: int, target: bytes = b"/ws/v1/system", headers: bytes = KEY + b"Sec-WebSocket-Version: 13\r\n"):
    """(status, body) the server answers an upgrade request, reading until it closes (or 5 s pass)."""
    request = (b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               + headers + b"\r\n")
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]) if head else None, head, body


@pytest.mark.parametrize(("target", "headers", "status"), [
    (b"/ws/v1/system", b"Sec-WebSocket-Version: 13\r\n", 400),  # no key
    (b"/ws/v1/system", b"Sec-WebSocket-Key: !!!\r\nSec-WebSocket-Version: 13\r\n", 400),
    (b"/ws/v1/system", KEY + b"Sec-WebSocket-Version: 8\r\n", 400),
    (b"/ws/v1/system?x=" + b"a" * 9000, KEY + b"Sec-WebSocket-Version: 13\r\n", 414),
    (b"/ws/v1/system", KEY + b"Sec-WebSocket-Version: 13\r\nX-Big: " + b"a" * 9000 + b"\r\n", 431),
    (b"/ws/v1/system", KEY + b"Sec-WebSocket-Version: 13\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)), 431),
])
def test_a_refused_handshake_is_answered_in_the_error_shape(served, target, headers, status):
    answered, head, body = handshake(served.port, target, headers)
    assert answered == status, head
    assert b"content-type: application/json" in head.lower() and error_of(body)["code"] == "malformed_request"
    assert served.alive()


def test_a_good_handshake_still_opens_the_stream(served):
    answered, head, _ = handshake(served.port)
    assert answered == 101, head
