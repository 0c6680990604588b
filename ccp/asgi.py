"""ASGI entry point (served by ``python -m ccp.server``): HTTP (API, admin) and WebSocket streams."""

import asyncio
import json
import os

import django
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse
from django.urls import get_resolver, set_script_prefix
from rest_framework.renderers import JSONRenderer

from ccp.server import RequestThreads, request_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")


class ProcessThreadHandler(ASGIHandler):
    """Django's ASGI handler with each request's synchronous code run in one call on one of the process's
    long-lived threads (``ccp.server.RequestThreads``, ``CCP_SERVER_THREADS``).

    Django's own handler starts and joins a thread per request (about half of a bare request's CPU) and,
    with synchronous middleware, hands a request between the event loop and a thread four or five times
    (the request_started signal, the middleware, an async view and its sync code, the response's close).
    Here the middleware chain is synchronous and one call on the request's thread runs the signal, the
    middleware, the view, the rendering and the close; the event loop reads the body and sends the answer.
    A response that waits for its orders' results (``awaited_orders``, ``ccp.orders.results``) waits in the
    event loop, then one more call on the thread re-renders it."""

    threads = RequestThreads(request_threads())

    def __init__(self):
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)  # the whole chain runs on the request's thread

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']}.")
        async with self.threads.request():
            await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            began = asyncio.get_running_loop().time()  # before the view stores any order
            response = await self.threads.run(self.respond, scope, body_file)
            awaited = getattr(response, "awaited_orders", None)
            if awaited is not None:
                response = await self.results_awaited(response, *awaited, began=began)
            if response.streaming:
                async with self.threads.thread_sensitive():  # Django iterates its body through asgiref
                    await self.send_response(response, send)
                await self.threads.run(response.close)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    _resolved: dict = {}  # (URL resolver, path) -> its match, for the paths without arguments
    _RESOLVED_MAX = 1_000  # emptied when full

    def resolve_request(self, request):
        """Django's, each path without arguments resolved once per URL configuration (a walk of the URL patterns
        cost an order about 13 us): its match is the same each time, and nothing changes one."""
        if hasattr(request, "urlconf"):  # set by a middleware for this request
            return super().resolve_request(request)
        key = (get_resolver(), request.path_info)
        match = self._resolved.get(key)
        if match is None:
            match = super().resolve_request(request)
            if not match.args and not match.kwargs:
                if len(self._resolved) >= self._RESOLVED_MAX:
                    self._resolved.clear()
                self._resolved[key] = match
        request.resolver_match = match
        return match

    def respond(self, scope, body_file):
        """A request's response, on its thread: Django's request_started signal, the request, the
        middleware and the view; a response that is not streamed is closed here (request_finished: the
        request's database connection goes back to the pool), having its content already."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response

    async def results_awaited(self, response, order_ids, rerender, *, began: float):
        """The response as it is once its orders have their results, waited for up to
        ``CCP_ORDER_WAIT_MS`` in the event loop (``ccp.orders.results``): re-rendered on the request's
        thread when a result came, the middleware's headers kept."""
        from ccp.orders.results import order_results_wait

        wait_s = settings.CCP_ORDER_WAIT_MS / 1000
        if wait_s <= 0:
            return response
        finished = await order_results_wait(order_ids, timeout_s=wait_s, began=began, as_sent=True)
        if not finished:
            return response
        direct = getattr(response, "awaited_render", None)
        if direct is not None and None not in finished.values() and isinstance(response.accepted_renderer,
                                                                                JSONRenderer):
            # Every order came with the signal as the worker committed it: rendered here, no thread or query
            return _content_replaced(response, *awaited_content(response, direct, finished))
        return await self.threads.run(_rerendered, response, rerender, set(finished))


class _Sent(bytes):
    """JSON text to answer as it is."""


def awaited_content(response, render, sent: dict[int, bytes]) -> tuple[bytes, int]:
    """The content and status of ``render`` (a response's ``awaited_render``) given its orders as their signals
    carried them (``sent``: each one's JSON as the worker encoded it), rendered by the response's JSON renderer.
    The orders' JSON goes in as it is when that gives the same bytes: DRF's compact renderer without an indent,
    and each order's JSON plain (ASCII without a \\u escape, which either ``ensure_ascii`` writes alike); else
    decoded and rendered again. A single order's answer is then its JSON,
    not decoded and encoded again (nor a batch's hundred)."""
    renderer, media_type, context = response.accepted_renderer, response.accepted_media_type, response.renderer_context
    if (type(renderer) is JSONRenderer and renderer.compact and renderer.get_indent(media_type, context) is None
            and all(value.isascii() and b"\\u" not in value for value in sent.values())):
        data, status = render({order_id: _Sent(value) for order_id, value in sent.items()})
        return _spliced(data, lambda value: renderer.render(value, media_type, context)), status
    data, status = render({order_id: json.loads(value) for order_id, value in sent.items()})
    return renderer.render(data, media_type, context), status


def _spliced(value, encode) -> bytes:
    """``encode(value)`` (a compact JSON encoder's bytes) with each ``_Sent`` in it as it is: objects and arrays
    are written here, as compact JSON writes them, other values by ``encode`` (or as it would write them)."""
    kind = type(value)
    if kind is _Sent:
        return bytes(value)
    if kind is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'  # nothing to escape
    if kind is int:
        return str(value).encode()
    if value is None:
        return b"null"
    if kind is dict and all(type(key) is str for key in value):
        return b"{" + b",".join(_spliced(key, encode) + b":" + _spliced(item, encode)
                                for key, item in value.items()) + b"}"
    if kind is list:
        return b"[" + b",".join(_spliced(item, encode) for item in value) + b"]"
    return encode(value)


def _content_replaced(response, content: bytes, status: int):
    """``response`` (rendered, its middleware's headers kept) with another content and status."""
    response.content, response.status_code = content, status
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    return response


def _rerendered(response, rerender, finished):
    """``response`` (closed, its middleware done) with the content and status of ``rerender(finished)``;
    the database connection the re-rendering took goes back to the pool."""
    try:
        again = rerender(finished)
        if again is not response:
            again.render()
            _content_replaced(response, again.content, again.status_code)
        return response
    finally:
        close_old_connections()


django.setup(set_prefix=False)
django_asgi_app = ProcessThreadHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.urls import path, re_path  # noqa: E402

import ccp.converters  # noqa: E402,F401  (registers <symbol:...>)
from ccp.consumers import UnknownStreamConsumer  # noqa: E402
from ccp.edge import HttpEdge  # noqa: E402
from ccp.marketdata.consumers import TradeConsumer  # noqa: E402
from ccp.memory import gc_settle  # noqa: E402
from ccp.orders.consumers import BookConsumer, PrivateConsumer  # noqa: E402
from ccp.system.consumers import SystemConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/v1/system", SystemConsumer.as_asgi()),
    path("ws/v1/book/<symbol:symbol>", BookConsumer.as_asgi()),
    path("ws/v1/trades/<symbol:symbol>", TradeConsumer.as_asgi()),
    path("ws/v1/private", PrivateConsumer.as_asgi()),
    re_path(r"", UnknownStreamConsumer.as_asgi()),  # anything else: close code 4404
]


async def lifespan(scope, receive, send) -> None:
    """A server process's start and stop (ASGI lifespan: ``ccp.server`` runs it). At start, before its first
    request: the URL patterns loaded (every view, serializer and URLconf module) and the collector settled
    (``ccp.memory.gc_settle``), so that no full collection walks them again in the middle of requests."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            get_resolver().url_patterns  # noqa: B018  (loads them)
            gc_settle()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter({
    "http": HttpEdge(django_asgi_app, max_body_bytes=settings.CCP_MAX_BODY_BYTES),
    "websocket": URLRouter(websocket_urlpatterns),
    "lifespan": lifespan,
})
