"""ASGI entry point for daphne: HTTP (API, admin) and WebSocket streams."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.urls import path  # noqa: E402

from ccp.orders.consumers import BookConsumer, PrivateConsumer  # noqa: E402
from ccp.system.consumers import SystemConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/v1/system", SystemConsumer.as_asgi()),
    path("ws/v1/book/<str:symbol>", BookConsumer.as_asgi()),
    path("ws/v1/private", PrivateConsumer.as_asgi()),
]

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter(websocket_urlpatterns),
})
