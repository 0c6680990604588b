"""ccp-client: a Python client of the ccp clearing house (REST and WebSocket, money as Decimal)."""

from ccp_client.books import GapError, LocalBook, Seen, Sequence
from ccp_client.client import Client
from ccp_client.errors import ApiError
from ccp_client.streams import BookStream, PrivateStream, TradeStream

__all__ = ["ApiError", "BookStream", "Client", "GapError", "LocalBook", "PrivateStream", "Seen", "Sequence",
           "TradeStream"]
