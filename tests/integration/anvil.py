"""The local node bin/test starts (anvil) and helpers for tests on it."""

import os

from eth_account import Account

ANVIL_URL = os.environ.get("ANVIL_URL", "")
# anvil's well-known development keys (accounts 0, 1, 2, 3): never for real funds
OPERATOR = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
TRADERS = ["0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
           "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
           "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"]


def mine(w3, blocks):
    w3.provider.make_request("anvil_mine", [blocks])


def deposit(w3, token, fund_lock, who, units):
    operator = Account.from_key(OPERATOR).address
    for call, sender in ((token.functions.mint(who, units), operator),
                         (token.functions.approve(fund_lock.address, units), who),
                         (fund_lock.functions.deposit(token.address, units), who)):
        assert w3.eth.wait_for_transaction_receipt(call.transact({"from": sender})).status == 1
