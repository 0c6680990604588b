from channels.db import database_sync_to_async

from ccp.consumers import CLOSE_NOT_FOUND, StreamConsumer
from ccp.contracts.models import Contract
from ccp.marketdata.selectors import trade_last_sequence
from ccp.streams import trades_group


class TradeConsumer(StreamConsumer):
    """A contract's public trades: a ``trades.snapshot`` with the last trade's sequence, then each trade
    booked after it, in sequence order (``ccp.marketdata.services.trades_publish``).

    A client that sees a sequence jump (the channel layer delivers at most once) reads the missing
    trades from GET /api/v1/contracts/<symbol>/trades?after_sequence=<last seen>.
    """

    snapshot_sequence = 0

    async def connect(self) -> None:
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        contract_id = await database_sync_to_async(self._contract_id)(symbol)
        if contract_id is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        # Join before reading, so no trade after the snapshot is missed; older ones are dropped below.
        await self.join(trades_group(contract_id))
        self.snapshot_sequence = await database_sync_to_async(trade_last_sequence)(contract_id=contract_id)
        await self.accept()
        await self.send_json({"type": "trades.snapshot", "contract": symbol, "sequence": self.snapshot_sequence})

    @staticmethod
    def _contract_id(symbol: str) -> int | None:
        return Contract.objects.filter(symbol=symbol).values_list("id", flat=True).first()

    def forwards(self, event: dict) -> bool:
        return event["sequence"] > self.snapshot_sequence
