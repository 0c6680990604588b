"""Trades booked through the ledger (``trades_book``), the one writer of candles and the trade stream."""

from datetime import datetime
from decimal import Decimal as D

from ccp.clearing.services import Execution, trades_book
from ccp.contracts.models import Contract
from tests.factories import ClientFactory, ReceivedOrderFactory


def book(contract: Contract, trades: list[tuple[str, str]], *, at: datetime, ref: str) -> list[dict]:
    """Book ``trades`` ((price, quantity) each, in sequence order) on ``contract`` as the venue event
    ``ref`` executed at ``at``, each between a fresh buy and a fresh sell order. Returns the booked rows."""
    buyer, seller = ClientFactory(), ClientFactory()
    executions = []
    for price, quantity in trades:
        buy = ReceivedOrderFactory(client=buyer, contract=contract, side="buy", price=D(price), quantity=D(quantity))
        sell = ReceivedOrderFactory(client=seller, contract=contract, side="sell", price=D(price), quantity=D(quantity))
        executions.append(Execution(contract.pk, D(price), D(quantity), buy.pk, buyer.pk, sell.pk, seller.pk))
    return trades_book(venue="auction", venue_ref=ref, executions=executions, now=at)
