# pragma version ~=0.4.3
"""
@title FundLock
@notice Holds clients' collateral in ERC-20 tokens for the clearing house.
@dev Why a withdrawal can never take locked funds: collateral sits in `balances`, which only
     `deposit` (the client) and `settle` (the operator) change. A client can only `withdraw`
     from its own `withdrawable`, and only the operator can fill that, through `release`, after
     the backend has checked the client's available (unlocked) collateral. So a client can never
     pull funds that back open positions or margin, whatever it calls and in whatever order.
     `settle` and `release` share one namespace of batch ids, each usable once, so a retried
     submission cannot apply twice.
"""

from ethereum.ercs import IERC20

# Largest batch: 1000 movements fit in a 30M-gas block (measured in tests/chain).
MAX_BATCH: constant(uint256) = 1000

event Deposit:
    client: indexed(address)
    token: indexed(address)
    amount: uint256
    balance: uint256

event BatchSettled:
    batch_id: indexed(bytes32)
    token: indexed(address)
    count: uint256

event Moved:
    batch_id: indexed(bytes32)
    client: indexed(address)
    token: address
    amount: int256

event Released:
    batch_id: indexed(bytes32)
    client: indexed(address)
    token: address
    amount: uint256

event Withdrawal:
    client: indexed(address)
    token: indexed(address)
    amount: uint256

event OperatorChanged:
    previous: indexed(address)
    new: indexed(address)

operator: public(address)
balances: public(HashMap[address, HashMap[address, uint256]])  # token -> client -> locked collateral
withdrawable: public(HashMap[address, HashMap[address, uint256]])  # token -> client -> released, pullable
applied: public(HashMap[bytes32, bool])  # batch ids already used by settle or release


@deploy
def __init__(operator: address):
    assert operator != empty(address), "no operator"
    self.operator = operator


@external
@nonreentrant
def deposit(token: address, amount: uint256):
    # default_return_value accepts tokens that return nothing; a `false` return still reverts.
    ok: bool = extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)
    assert ok, "transferFrom failed"
    balance: uint256 = self.balances[token][msg.sender] + amount
    self.balances[token][msg.sender] = balance
    log Deposit(client=msg.sender, token=token, amount=amount, balance=balance)


@external
def settle(batch_id: bytes32, token: address, clients: DynArray[address, MAX_BATCH],
           amounts: DynArray[int256, MAX_BATCH]):
    self._open_batch(batch_id, len(clients), len(amounts))
    total: int256 = 0
    for a: int256 in amounts:
        total += a
    assert total == 0, "batch does not net to zero"
    # Credits first, then debits: a balance only falls in the second pass, so the result does not
    # depend on entry order and "never negative" means the client's final balance.
    for i: uint256 in range(len(clients), bound=MAX_BATCH):
        if amounts[i] > 0:
            self.balances[token][clients[i]] += convert(amounts[i], uint256)
    for i: uint256 in range(len(clients), bound=MAX_BATCH):
        if amounts[i] < 0:
            debit: uint256 = convert(-amounts[i], uint256)
            assert self.balances[token][clients[i]] >= debit, "balance would go negative"
            self.balances[token][clients[i]] -= debit
        log Moved(batch_id=batch_id, client=clients[i], token=token, amount=amounts[i])
    log BatchSettled(batch_id=batch_id, token=token, count=len(clients))


@external
def release(batch_id: bytes32, token: address, clients: DynArray[address, MAX_BATCH],
            amounts: DynArray[uint256, MAX_BATCH]):
    self._open_batch(batch_id, len(clients), len(amounts))
    for i: uint256 in range(len(clients), bound=MAX_BATCH):
        assert self.balances[token][clients[i]] >= amounts[i], "release exceeds balance"
        self.balances[token][clients[i]] -= amounts[i]
        self.withdrawable[token][clients[i]] += amounts[i]
        log Released(batch_id=batch_id, client=clients[i], token=token, amount=amounts[i])


@external
@nonreentrant
def withdraw(token: address, amount: uint256):
    # Only `withdrawable` is touched: locked `balances` are out of the client's reach.
    assert self.withdrawable[token][msg.sender] >= amount, "exceeds withdrawable"
    self.withdrawable[token][msg.sender] -= amount  # effects before the external call
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True), "transfer failed"
    log Withdrawal(client=msg.sender, token=token, amount=amount)


@external
def set_operator(new: address):
    assert msg.sender == self.operator, "not operator"
    assert new != empty(address), "no operator"
    log OperatorChanged(previous=self.operator, new=new)
    self.operator = new


@internal
def _open_batch(batch_id: bytes32, n_clients: uint256, n_amounts: uint256):
    # Shared by settle and release: operator only, equal lengths, each batch id used once.
    assert msg.sender == self.operator, "not operator"
    assert n_clients == n_amounts, "length mismatch"
    assert not self.applied[batch_id], "batch already applied"
    self.applied[batch_id] = True
