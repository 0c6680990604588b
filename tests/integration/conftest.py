import pytest
from django.core.management import call_command

from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.connect import web3_for
from ccp.settlement.models import ChainContract
from tests.factories import CurrencyFactory
from tests.integration.anvil import ANVIL_URL, OPERATOR


@pytest.fixture
def chain(settings):
    """FundLock and a demo USDC deployed on anvil by chain_deploy; the node is reverted afterwards."""
    settings.CCP_CHAIN_URL, settings.CCP_CHAIN_OPERATOR_KEY, settings.CCP_CHAIN_CONFIRMATIONS = ANVIL_URL, OPERATOR, 2
    w3 = web3_for(ANVIL_URL)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    CurrencyFactory(symbol="USDC", decimals=6)
    call_command("chain_deploy", url=ANVIL_URL, operator_key=OPERATOR, demo_token="USDC", verbosity=0)
    usdc = Currency.objects.get(symbol="USDC")
    token = w3.eth.contract(address=w3.to_checksum_address(usdc.token_address), abi=load_artifact("TestToken")["abi"])
    fund_lock = w3.eth.contract(address=w3.to_checksum_address(ChainContract.objects.get().address),
                                abi=load_artifact("FundLock")["abi"])
    yield w3, token, fund_lock, usdc
    w3.provider.make_request("evm_setAutomine", [True])
    w3.provider.make_request("evm_revert", [snapshot])
