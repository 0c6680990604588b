"""ASGI entry point (served by ``python -m ccp.server``): HTTP (API, admin) and WebSocket streams."""

import os

import django
from django.core.handlers.asgi import ASGIHandler

from ccp.server import RequestThreads, request_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")


class ProcessThreadHandler(ASGIHandler):
    """Django's ASGI handler without a new thread per request: Django runs each request's synchronous
    code (middleware, view, ORM) in a thread of its own, started and joined per request (about half of
    a bare request's CPU); here each request takes one of the process's long-lived threads
    (``ccp.server.RequestThreads``, ``CCP_SERVER_THREADS``)."""

    threads = RequestThreads(request_threads())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']}.")
        async with self.threads.request():
            await self.handle(scope, receive, send)


django.setup(set_prefix=False)
django_asgi_app = ProcessThreadHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402
from django.urls import path, re_path  # noqa: E402

import ccp.converters  # noqa: E402,F401  (registers <symbol:...>)
from ccp.consumers import UnknownStreamConsumer  # noqa: E402
from ccp.edge import HttpEdge  # noqa: E402
from ccp.marketdata.consumers import TradeConsumer  # noqa: E402
from ccp.orders.consumers import BookConsumer, PrivateConsumer  # noqa: E402
from ccp.system.consumers import SystemConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/v1/system", SystemConsumer.as_asgi()),
    path("ws/v1/book/<symbol:symbol>", BookConsumer.as_asgi()),
    path("ws/v1/trades/<symbol:symbol>", TradeConsumer.as_asgi()),
    path("ws/v1/private", PrivateConsumer.as_asgi()),
    re_path(r"", UnknownStreamConsumer.as_asgi()),  # anything else: close code 4404
]

application = ProtocolTypeRouter({
    "http": HttpEdge(django_asgi_app, max_body_bytes=settings.CCP_MAX_BODY_BYTES),
    "websocket": URLRouter(websocket_urlpatterns),
})
