"""Pushes to the public system stream (``/ws/v1/system``) through the channel layer."""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

SYSTEM_GROUP = "system"


def system_event_publish(event: dict[str, Any]) -> None:
    async_to_sync(get_channel_layer().group_send)(SYSTEM_GROUP, {"type": "system.event", "event": event})
