"""WebSocket pushes through the channel layer. Call only after the database commit
(``transaction.on_commit``): a subscriber must never see what a rollback undid.

The channel layer delivers at most once; every stream carries what a client needs to notice a
gap (book sequence numbers) and re-sync over REST.
"""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

SYSTEM_GROUP = "system"


def book_group(contract_id: int) -> str:
    return f"book.{contract_id}"


def client_group(client_id: int) -> str:
    return f"client.{client_id}"


def stream_publish(group: str, event: dict[str, Any]) -> None:
    async_to_sync(get_channel_layer().group_send)(group, {"type": "stream.event", "event": event})


def token_revoked_publish(client_id: int, token_id: int) -> None:
    """Tell the client's open private streams that one of its tokens stopped working (not forwarded)."""
    async_to_sync(get_channel_layer().group_send)(client_group(client_id),
                                                  {"type": "token.revoked", "token_id": token_id})
