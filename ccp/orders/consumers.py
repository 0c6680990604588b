from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from ccp.accounts.authentication import bearer_token
from ccp.accounts.models import ApiToken
from ccp.accounts.services import api_token_authenticate
from ccp.clock import utcnow
from ccp.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED, StreamConsumer
from ccp.contracts.models import Contract
from ccp.errors import ApplicationError
from ccp.orders.selectors import book_levels
from ccp.orders.serializers import BookSerializer
from ccp.streams import book_group, client_group


class BookConsumer(StreamConsumer):
    """Public book of one contract: a snapshot, then level changes, each with the next sequence number.

    A client that sees a sequence jump (the channel layer delivers at most once) re-syncs from
    GET /api/v1/contracts/<symbol>/book.
    """

    snapshot_sequence = 0

    async def connect(self) -> None:
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        contract_id = await database_sync_to_async(self._contract_id)(symbol)
        if contract_id is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        # Join before reading, so no change after the snapshot is missed; older ones are dropped below.
        await self.join(book_group(contract_id))
        snapshot = await database_sync_to_async(self._snapshot)(contract_id, symbol)
        self.snapshot_sequence = snapshot["sequence"]
        await self.accept()
        await self.send_json({"type": "book.snapshot", **snapshot})

    @staticmethod
    def _contract_id(symbol: str) -> int | None:
        return Contract.objects.filter(symbol=symbol).values_list("id", flat=True).first()

    @staticmethod
    def _snapshot(contract_id: int, symbol: str) -> dict:
        return BookSerializer({"contract": symbol, **book_levels(contract_id=contract_id)}).data

    def forwards(self, event: dict) -> bool:
        # Level changes already in the snapshot are dropped; trade reports carry no sequence.
        sequence = event.get("sequence")
        return sequence is None or sequence > self.snapshot_sequence


class PrivateConsumer(StreamConsumer):
    """A client's own order states, fills and balance changes. Needs the API token, as
    ``Authorization: Bearer <token>`` or ``?token=<token>`` (browsers cannot set headers).
    Closes with 4401 when that token is revoked (sign-out) or expires."""

    api_token: ApiToken

    async def connect(self) -> None:
        api_token = await database_sync_to_async(self._api_token)()
        if api_token is None:
            await self.refuse(CLOSE_UNAUTHORIZED)
            return
        self.api_token = api_token
        await self.join(client_group(api_token.client_id))
        await self.accept()
        await self.send_json({"type": "hello", "address": api_token.client.checksum_address})

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
