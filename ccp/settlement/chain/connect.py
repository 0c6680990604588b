"""The configured chain: a node URL (http or https), the deployed FundLock, the operator account."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ccp.settlement.chain.client import FundLockClient


def web3_for(url: str) -> Web3:
    # web3's WebSocket provider is async-only: the services here call the node synchronously.
    if not url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"chain node URL {url!r}: give an http:// or https:// URL")
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))


def operator_account(key: str) -> LocalAccount:
    return Account.from_key(key)


def fund_lock_client(url: str, address: str) -> FundLockClient:
    return FundLockClient(web3_for(url), address)
