"""The API, admin and WebSocket server: daphne with the clearing house's limits.

    python -m ccp.server -b 127.0.0.1 -p 8000 ccp.asgi:application

The same arguments as ``daphne``; what differs:

- request bodies reach the application unparsed: Twisted parses a multipart/form-data POST body
  itself before daphne sees the request (memory for the whole upload) and answers a malformed one
  with an empty 400, outside the API's error shape. The application parses bodies (JSON only).
- WebSocket messages and frames are capped at ``CCP_WS_MAX_MESSAGE_BYTES`` (default 64 KiB, daphne's
  is 1 MiB): the streams take no messages, a larger one closes the stream with code 1009.
"""

from __future__ import annotations

import os
import sys

from daphne import server  # isort:skip  (first: it installs Twisted's asyncio reactor)
from daphne import http_protocol, ws_protocol
from daphne.cli import CommandLineInterface

WS_MAX_MESSAGE_BYTES = int(os.environ.get("CCP_WS_MAX_MESSAGE_BYTES", str(64 * 1024)))


class WebRequest(http_protocol.WebRequest):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False


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
