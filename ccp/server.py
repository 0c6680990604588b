"""The API, admin and WebSocket server: uvicorn, several worker processes, with the clearing house's limits.

    python -m ccp.server -b 127.0.0.1 -p 8000 [--workers N] [ccp.asgi:application]

One listening socket shared by ``--workers`` processes (default ``CCP_SERVER_WORKERS``, else the
machine's core count), each an event loop (uvloop) with a C HTTP parser (httptools) serving the
whole ASGI application: REST, admin and the WebSocket streams (``websockets``). A worker that dies
is started again by the main process. Daphne served 108-219 bare requests/s on two cores (about 4 to
8 ms of CPU each in Twisted); this serves several times that (``bench/order_intake.py``).

The limits, as with daphne before:

- a request body over ``CCP_MAX_BODY_BYTES`` is refused with 413 ``body_too_large`` by the
  application's edge (``ccp.edge.HttpEdge``) as soon as its Content-Length is read or as it grows
  past the limit (chunked), before it is stored, and the connection is closed; uvicorn never parses
  a body itself (a multipart body reaches the application unparsed, which refuses it with 415);
- a request httptools cannot parse gets a 400 ``malformed_request`` in the error shape (a
  Content-Length over 2^64: 413);
- a WebSocket message or frame over ``CCP_WS_MAX_MESSAGE_BYTES`` (default 64 KiB) closes that
  stream with 1009: the streams take no messages.
- a WebSocket handshake websockets refuses is answered in the error shape (``WebSocketProtocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import email.utils
import http
import json
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Response

from ccp.errors import STATUS_CODES, error_body

WS_MAX_MESSAGE_BYTES = int(os.environ.get("CCP_WS_MAX_MESSAGE_BYTES", str(64 * 1024)))


class HttpProtocol(HttpToolsProtocol):
    """httptools refuses a request it cannot parse before the application sees it, with a text/plain
    400: answered here in the API's error shape instead, and a Content-Length too large to parse
    (over 2^64) as the 413 the application gives any length over the limit."""

    def send_400_response(self, msg: str) -> None:
        from django.conf import settings  # set up: the worker loaded the application before serving

        error = sys.exc_info()[1]  # called while handling the parser's error
        if error is not None and "Content-Length overflow" in str(error):
            limit = settings.CCP_MAX_BODY_BYTES
            status, reason = b"413 Content Too Large", error_body(
                "body_too_large", f"The request body is larger than {limit} bytes.", {"max_bytes": limit})
        else:
            status = b"400 Bad Request"
            reason = error_body("malformed_request", "The HTTP request could not be parsed.")
        body = json.dumps(reason).encode()
        self.transport.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, len(body), body))
        self.transport.close()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets' sans-I/O one), with each handshake it refuses answered in the API's
    error shape rather than websockets' text/plain: a bad Sec-WebSocket-Key or version 400 ``malformed_request``, a
    request line over 8 KiB 414 and header lines too long or too many 431 (``malformed_request`` too). Those two were
    not answered at all: websockets queues its refusal before any request event, and uvicorn sends what websockets
    queued only on one, so the connection hung with the answer unsent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.reject = self._reject  # every refusal of the handshake, websockets' own and uvicorn's

    def _reject(self, status: int, text: str) -> Response:
        status = http.HTTPStatus(status)
        code = STATUS_CODES.get(status.value, ("internal_error" if status >= 500 else "malformed_request",))[0]
        body = json.dumps(error_body(code, text.strip() or status.phrase)).encode()
        return Response(status.value, status.phrase, Headers([
            ("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
            ("Content-Length", str(len(body))), ("Content-Type", "application/json")]), body)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.transport.is_closing():
            # refused before a request was read whole (too long, or not HTTP): send what websockets queued, close
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()


class RequestThread(Executor):
    """One long-lived thread that runs the calls handed to it, one at a time, in order: a request's synchronous
    code (``RequestThreads.run``), and as an Executor what asgiref hands it (``ThreadSensitiveContext``)."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="ccp-request", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self.calls.get()()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001  (the caller's: it gets it from the future)
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        self.calls.put(call)
        return future


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if not future.done():  # not cancelled meanwhile
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


_request_thread: contextvars.ContextVar[RequestThread] = contextvars.ContextVar("ccp_request_thread")


class RequestThreads:
    """The threads a server process runs its requests' synchronous code on (middleware, views, the ORM):
    each request takes one for all of its sync code (one thread per request, so its database connection is its
    own), at most ``size`` at once (the others wait their turn in the event loop), and gives it back for the
    next. Long-lived, unlike Django's thread started and joined per request (about half of a bare request's
    CPU); several, unlike one per process, so that a request waiting on the database or for its order's result
    does not stop the process's others. A call is handed to its thread on a queue and its result comes back to
    the event loop as a callback: no thread pool's futures and locks in between (``ThreadPoolExecutor`` and
    asgiref's thread-sensitive context around each request cost about 20 us a request, half of it in the
    event loop), asgiref's context set only around a streamed answer, which Django iterates through it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free: list[RequestThread] = []
        self.slots: asyncio.Semaphore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        if self.loop is not asyncio.get_running_loop():  # the server's one loop (a test may run several)
            self.slots, self.loop = asyncio.Semaphore(self.size), asyncio.get_running_loop()
        async with self.slots:
            thread = self.free.pop() if self.free else RequestThread()
            token = _request_thread.set(thread)
            try:
                yield
            finally:
                _request_thread.reset(token)
                self.free.append(thread)

    @staticmethod
    def thread_sensitive() -> ThreadSensitiveContext:
        """asgiref's context sending thread-sensitive ``sync_to_async`` calls to the current request's thread (as
        Django iterates a streamed response's body), entered around them (inside ``request()``)."""
        return ThreadSensitiveContext(executor=_request_thread.get())

    @staticmethod
    async def run(function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the current request's thread (inside ``request()``), in a copy of the
        caller's context: one hand-over each way (a request's sync code runs in one or two such calls, not one
        per middleware, signal and view)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        context = contextvars.copy_context()

        def call() -> None:
            try:
                result, error = context.run(function, *args), None
            except BaseException as exc:  # noqa: BLE001  (the caller's: raised where it awaits)
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a test's): nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)

        _request_thread.get().calls.put(call)
        return await future


def request_threads() -> int:
    """``CCP_SERVER_THREADS`` (default 16: below the database pool's 20 connections per process, which each
    request holds until it ends)."""
    return int(os.environ.get("CCP_SERVER_THREADS") or 16)


def default_workers() -> int:
    """``CCP_SERVER_WORKERS``, else one per core."""
    return int(os.environ.get("CCP_SERVER_WORKERS") or os.cpu_count() or 1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ccp.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: CCP_SERVER_WORKERS, else the core count)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("application", nargs="?", default="ccp.asgi:application", help="module:attribute")
    args = parser.parse_args(argv)
    args.workers = default_workers() if args.workers is None else args.workers
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str]) -> None:
    import uvicorn

    args = parse_args(argv)
    # each request thread keeps a database connection (ccp.settings; the worker processes inherit this)
    os.environ.setdefault("CCP_DB_PER_THREAD", "1")
    uvicorn.run(
        args.application, host=args.bind, port=args.port, workers=args.workers,
        loop="uvloop", http="ccp.server:HttpProtocol", ws="ccp.server:WebSocketProtocol",
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        # No permessage-deflate: compressing each small stream event once per connection (its own zlib
        # context each) was the largest cost of a book change sent to 1,000 subscribers.
        ws_per_message_deflate=False,
        lifespan="on",  # ccp.asgi.lifespan: the process settles before its first request
        access_log=args.access_log, server_header=False,
        # clients keep their connections between bursts (the bench's client drops idle ones after 60 s)
        timeout_keep_alive=int(os.environ.get("CCP_SERVER_KEEPALIVE_SECONDS", "75")),
        log_level=os.environ.get("CCP_SERVER_LOG_LEVEL", "info"),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
