"""The API, admin and WebSocket server: daphne with the clearing house's limits.

    python -m ccp.server -b 127.0.0.1 -p 8000 ccp.asgi:application

The same arguments as ``daphne``; what differs:

- a request body over ``CCP_MAX_BODY_BYTES`` is refused with 413 as soon as its length is known
  or it grows past it, before Twisted has stored it (it spools bodies to disk, of any size);
- request bodies reach the application unparsed: Twisted parses a multipart/form-data POST body
  itself before daphne sees the request (memory for the whole upload) and answers a malformed one
  with an empty 400, outside the API's error shape. The application parses bodies (JSON only).
- WebSocket messages and frames are capped at ``CCP_WS_MAX_MESSAGE_BYTES`` (default 64 KiB, daphne's
  is 1 MiB): the streams take no messages, a larger one closes the stream with code 1009.
"""

from __future__ import annotations

import json
import os
import sys

from daphne import server  # isort:skip  (first: it installs Twisted's asyncio reactor)
from daphne import http_protocol, ws_protocol
from daphne.cli import CommandLineInterface

from ccp.errors import error_body

WS_MAX_MESSAGE_BYTES = int(os.environ.get("CCP_WS_MAX_MESSAGE_BYTES", str(64 * 1024)))


def _max_body_bytes() -> int:
    from django.conf import settings  # configured once daphne has loaded the application

    return settings.CCP_MAX_BODY_BYTES


class WebRequest(http_protocol.WebRequest):
    """Twisted collects a whole request body (into a temporary file when large) before daphne sees
    the request: a body over the limit is refused here, as its length is announced or as it arrives,
    with the 413 the application would give, and the connection closed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False
        self._body_bytes = 0
        self._refused = False

    def gotLength(self, length) -> None:
        if length is not None and length > _max_body_bytes():
            self._refuse()
        super().gotLength(0 if self._refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._refused or self._body_bytes > _max_body_bytes():
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        limit = _max_body_bytes()
        body = json.dumps(error_body("body_too_large", f"The request body is larger than {limit} bytes.",
                                     {"max_bytes": limit})).encode()
        self.channel.transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.channel.transport.loseConnection()


class WebSocketFactory(ws_protocol.WebSocketFactory):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Autobahn drops the TCP connection on a protocol error (an oversized message) by default:
        # close it with the code instead (1009), so the client can read why.
        self.setProtocolOptions(failByDrop=False)


def main(argv: list[str]) -> None:
    # daphne builds its requests and its WebSocket factory from these module attributes.
    http_protocol.WebRequest = WebRequest
    server.WebSocketFactory = WebSocketFactory
    limits = ["--websocket-max-message-size", str(WS_MAX_MESSAGE_BYTES),
              "--websocket-max-frame-size", str(WS_MAX_MESSAGE_BYTES)]
    CommandLineInterface().run([*limits, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
