import pytest

from ccp.prices.models import VenueSymbol
from tests.factories import ContractFactory


@pytest.fixture
def pair():
    """BTC/USDC with a listed contract and its market at each venue (what the spot price loop polls)."""
    contract = ContractFactory()
    for name, symbol in (("gemini", "BTC/USD"), ("coinbase", "BTC/USD"), ("binance", "BTC/USDT")):
        VenueSymbol.objects.create(pair=contract.pair, venue=name, symbol=symbol)
    return contract.pair
