from decimal import Decimal as D

import pytest

from tests.factories import ContractFactory, FundLockFactory


@pytest.fixture
def contract():
    return ContractFactory()


@pytest.fixture
def trader(contract):
    """A client with 1000 of the contract's collateral."""
    return FundLockFactory(currency=contract.collateral, fundlock=D("1000")).client
