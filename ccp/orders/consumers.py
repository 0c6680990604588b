from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from ccp.accounts.authentication import bearer_token
from ccp.accounts.models import ApiToken, Client
from ccp.accounts.services import api_token_authenticate
from ccp.clock import utcnow
from ccp.consumers import CLOSE_UNAUTHORIZED, ContractStreamConsumer, StreamConsumer
from ccp.errors import ApplicationError
from ccp.marketdata.services import bbo_payload
from ccp.orders.selectors import bbo_of, book_levels
from ccp.orders.serializers import BookSerializer
from ccp.streams import book_group, client_group


class BookConsumer(ContractStreamConsumer):
    """Public book of one contract: a snapshot (with its best bid and offer, ``bbo``), then level
    changes, each with the next sequence number, a ``book.bbo`` after each change that moved the best
    bid or offer (with the sequence of that change: ``ccp.marketdata.services.books_bbo_publish``), and
    the auction's trade reports, which carry none.

    A client that sees a sequence jump (the channel layer delivers at most once) re-syncs from
    GET /api/v1/contracts/<symbol>/book.
    """

    def group(self, contract_id: int) -> str:
        return book_group(contract_id)

    def snapshot(self, contract_id: int, symbol: str) -> dict:
        book = book_levels(contract_id=contract_id)
        return {"type": "book.snapshot", **BookSerializer({"contract": symbol, **book}).data,
                "bbo": bbo_payload(bbo_of(bids=book["bids"], asks=book["asks"]))}


class PrivateConsumer(StreamConsumer):
    """A client's own order states, fills and balance changes. Needs the API token, as
    ``Authorization: Bearer <token>`` or ``?token=<token>`` (browsers cannot set headers).
    Closes with 4401 when that token is revoked (sign-out) or expires.

    The ``hello`` carries the client's last private ``sequence``; every message after it carries the
    next one (``ccp.streams.client_stream_publish_many``): a jump means messages were missed (re-sync
    over REST)."""

    api_token: ApiToken
    hello_sequence = 0

    async def connect(self) -> None:
        api_token = await database_sync_to_async(self._api_token)()
        if api_token is None:
            await self.refuse(CLOSE_UNAUTHORIZED)
            return
        self.api_token = api_token
        # Join before reading the client's sequence, so no message after it is missed; older ones are dropped.
        await self.join(client_group(api_token.client_id))
        self.hello_sequence = await database_sync_to_async(self._stream_sequence)(api_token.client_id)
        await self.accept()
        await self.send_json({"type": "hello", "address": api_token.client.checksum_address,
                              "sequence": self.hello_sequence})

    @staticmethod
    def _stream_sequence(client_id: int) -> int:
        return Client.objects.values_list("stream_sequence", flat=True).get(pk=client_id)

    def forwards(self, event: dict) -> bool:
        # Messages numbered before the hello's sequence were committed before it was read: dropped.
        return event.get("sequence", self.hello_sequence + 1) > self.hello_sequence

    def _api_token(self) -> ApiToken | None:
        headers = dict(self.scope.get("headers", []))
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            token = bearer_token(headers.get(b"authorization", b"")) or (query.get("token") or [None])[0]
            if not token:
                return None
            return api_token_authenticate(token=token, now=utcnow())
        except ApplicationError:
            return None

    async def may_send(self) -> bool:
        if utcnow() >= self.api_token.expires_at:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return False
        return True

    async def token_revoked(self, message: dict) -> None:
        if message["token_id"] == self.api_token.pk:
            await self.close(code=CLOSE_UNAUTHORIZED)
