"""The configured chain: a node URL (http(s) or ws(s)), the deployed FundLock, the operator account."""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ccp.settlement.chain.client import FundLockClient


def web3_for(url: str) -> Web3:
    provider = Web3.WebSocketProvider(url) if url.startswith("ws") else Web3.HTTPProvider(url, request_kwargs={
        "timeout": 10})
    return Web3(provider)


def operator_account(key: str) -> LocalAccount:
    return Account.from_key(key)


def fund_lock_client(url: str, address: str) -> FundLockClient:
    return FundLockClient(web3_for(url), address)
