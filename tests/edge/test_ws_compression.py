"""The served WebSockets send stream events uncompressed: permessage-deflate keeps a zlib context per
connection and compresses every small event once per subscriber, the largest cost of a book change
sent to 1,000 subscribers (``bench/ws_fanout.py``)."""

import asyncio

import websockets


def test_the_server_declines_permessage_deflate(served):
    async def extensions() -> str | None:
        # the client offers permessage-deflate (websockets does by default)
        async with websockets.connect(served.ws_url + "/ws/v1/system", open_timeout=10) as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(extensions()) is None
