from ccp.consumers import ContractStreamConsumer
from ccp.marketdata.selectors import trade_last_sequence
from ccp.streams import trades_group


class TradeConsumer(ContractStreamConsumer):
    """A contract's public trades: a ``trades.snapshot`` with the last trade's sequence (0 before the
    first), then each trade booked after it, in sequence order (``ccp.marketdata.services.trades_publish``).

    A client that sees a sequence jump (the channel layer delivers at most once) reads the missing
    trades from GET /api/v1/contracts/<symbol>/trades?after_sequence=<last seen>.
    """

    def group(self, contract_id: int) -> str:
        return trades_group(contract_id)

    def snapshot(self, contract_id: int, symbol: str) -> dict:
        return {"type": "trades.snapshot", "contract": symbol, "sequence": trade_last_sequence(contract_id=contract_id)}
