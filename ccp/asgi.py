"""ASGI entry point (served by ``python -m ccp.server``): HTTP (API, admin) and WebSocket streams."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
django_asgi_app = get_asgi_application()

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
