"""Gas used by `settle` as a batch grows: the largest batch (1000 movements) must fit in a 30M-gas block."""

import pytest
from web3 import Web3

from .conftest import send

BLOCK_GAS = 30_000_000


def settle_gas(w3, fund_lock, token, batch_no, clients, amounts, operator):
    batch_id = batch_no.to_bytes(32, "big")
    return send(w3, fund_lock.functions.settle(batch_id, token.address, clients, amounts), operator).gasUsed


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_settle_gas(n, w3, accounts, token, fund_lock, capsys):
    operator, alice, _, _ = accounts
    send(w3, token.functions.approve(fund_lock.address, n), alice)
    send(w3, fund_lock.functions.deposit(token.address, n), alice)
    clients = [alice] + [Web3.to_checksum_address((0x1000 + i).to_bytes(20, "big")) for i in range(n - 1)]

    # Worst realistic case: Alice pays n-1 clients with no balance yet (new storage slots).
    fresh = settle_gas(w3, fund_lock, token, 1, clients, [-(n - 1)] + [1] * (n - 1), operator)
    # Usual case: clients that already hold balances pay each other in pairs.
    existing = settle_gas(w3, fund_lock, token, 2, clients, [-1, 1] * (n // 2), operator)

    with capsys.disabled():
        print(f"\nsettle gas, {n} movements: {fresh:,} to new balances, {existing:,} between existing balances")
    assert max(fresh, existing) < BLOCK_GAS
