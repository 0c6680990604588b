"""Reads of the settlement app that more than one caller needs."""

from dataclasses import dataclass
from functools import cache

from django.conf import settings
from eth_utils import to_checksum_address

from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.models import ChainContract

# What a wallet calls on a collateral token: the ERC-20 standard, not the demo token's mint.
ERC20_NAMES = {"Transfer", "Approval", "transfer", "transferFrom", "approve", "name", "symbol", "decimals",
               "totalSupply", "balanceOf", "allowance"}


@dataclass(frozen=True)
class ChainToken:
    symbol: str
    name: str
    address: str
    decimals: int


@dataclass(frozen=True)
class ChainInfo:
    configured: bool
    chain_id: int | None
    fund_lock_address: str | None
    deployed_block: int | None
    confirmations: int
    tokens: list[ChainToken]
    fund_lock_abi: list[dict]
    token_abi: list[dict]


@cache
def _abis() -> tuple[list[dict], list[dict]]:
    token = [entry for entry in load_artifact("TestToken")["abi"] if entry.get("name") in ERC20_NAMES]
    return load_artifact("FundLock")["abi"], token


def fund_lock_deployed() -> ChainContract | None:
    """The FundLock the chain loops watch: recorded by ``chain_deploy``, used only with CCP_CHAIN_URL set."""
    if not settings.CCP_CHAIN_URL:
        return None
    return ChainContract.objects.filter(name="FundLock").first()


def chain_info() -> ChainInfo:
    """What a wallet needs to deposit: the chain, the FundLock contract, the accepted tokens (addresses
    EIP-55 checksummed) and the ABIs. Not configured (no CCP_CHAIN_URL or no FundLock deployed): the
    addresses are null and no token is listed, since no deposit would be credited."""
    deployed = fund_lock_deployed()
    fund_lock_abi, token_abi = _abis()
    tokens = [] if deployed is None else [
        ChainToken(symbol=c.symbol, name=c.name, address=to_checksum_address(c.token_address), decimals=c.decimals)
        for c in Currency.objects.filter(token_address__isnull=False).order_by("symbol")]
    return ChainInfo(configured=deployed is not None, chain_id=deployed.chain_id if deployed else None,
                     fund_lock_address=to_checksum_address(deployed.address) if deployed else None,
                     deployed_block=deployed.deployed_block if deployed else None,
                     confirmations=settings.CCP_CHAIN_CONFIRMATIONS, tokens=tokens, fund_lock_abi=fund_lock_abi,
                     token_abi=token_abi)
