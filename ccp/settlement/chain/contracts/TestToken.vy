# pragma version ~=0.4.3
"""
@title TestToken
@notice Minimal mintable ERC-20 for tests and the demo. Not for production: its deployer mints at will.
"""

from ethereum.ercs import IERC20

implements: IERC20

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
minter: public(address)


@deploy
def __init__(name: String[64], symbol: String[32], decimals: uint8):
    self.name = name
    self.symbol = symbol
    self.decimals = decimals
    self.minter = msg.sender


@external
def mint(to: address, amount: uint256):
    assert msg.sender == self.minter, "not minter"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    # Checked subtraction reverts when the allowance is short.
    self.allowance[owner][msg.sender] -= amount
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@internal
def _transfer(sender: address, to: address, amount: uint256):
    self.balanceOf[sender] -= amount  # reverts on insufficient balance
    self.balanceOf[to] += amount
    log Transfer(sender=sender, receiver=to, value=amount)
