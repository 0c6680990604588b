"""The FundLock contract through web3: read deposits, sign and send settlement batches. No Django.

Works the same against the in-process EVM (eth-tester, for tests) and a real node (anvil, mainnet).
Transactions are signed here with the operator's key, so their hash is known (and recorded by the
caller) before they are sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from ccp.settlement.chain.artifacts import load_artifact

SETTLE_GAS_PER_MOVEMENT = 26_000  # measured worst case (a fresh balance slot) is about 25,300
SETTLE_GAS_BASE = 60_000
RELEASE_GAS_PER_MOVEMENT = 50_000  # two slots per client (balance down, a fresh withdrawable up)
RELEASE_GAS_BASE = 80_000


@dataclass(frozen=True)
class DepositLog:
    client: str  # lower-case address
    token: str  # lower-case address
    amount: int  # token base units
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str
    raw: bytes
    nonce: int


class FundLockClient:
    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("FundLock")["abi"])

    @property
    def address(self) -> str:
        return self.contract.address.lower()

    def head(self) -> int:
        return self.w3.eth.block_number

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number``, or None if the node does not have it (it lost blocks)."""
        try:
            return self.w3.eth.get_block(number)["hash"].to_0x_hex()
        except BlockNotFound:
            return None

    def deposits(self, from_block: int, to_block: int) -> list[DepositLog]:
        logs = self.contract.events.Deposit.get_logs(from_block=from_block, to_block=to_block)
        return [DepositLog(client=log["args"]["client"].lower(), token=log["args"]["token"].lower(),
                           amount=int(log["args"]["amount"]), block_number=log["blockNumber"],
                           block_hash=log["blockHash"].to_0x_hex(), tx_hash=log["transactionHash"].to_0x_hex(),
                           log_index=log["logIndex"]) for log in logs]

    def balance(self, token: str, client: str, block: int | str = "latest") -> int:
        return self.contract.functions.balances(Web3.to_checksum_address(token),
                                                Web3.to_checksum_address(client)).call(block_identifier=block)

    def applied(self, batch_id: bytes, block: int | str = "latest") -> bool:
        return self.contract.functions.applied(batch_id).call(block_identifier=block)

    def nonce(self, address: str) -> int:
        """How many transactions ``address`` has in mined blocks: its next nonce once the pool is empty."""
        return self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "latest")

    def sign_settle(self, *, operator: LocalAccount, batch_id: bytes, token: str, clients: list[str],
                    amounts: list[int], nonce: int, gas_price: int) -> SignedTx:
        call = self.contract.functions.settle(batch_id, Web3.to_checksum_address(token),
                                              [Web3.to_checksum_address(c) for c in clients], amounts)
        return self._sign(operator, call, nonce, gas_price, SETTLE_GAS_BASE + SETTLE_GAS_PER_MOVEMENT * len(clients))

    def sign_release(self, *, operator: LocalAccount, batch_id: bytes, token: str, clients: list[str],
                     amounts: list[int], nonce: int, gas_price: int) -> SignedTx:
        call = self.contract.functions.release(batch_id, Web3.to_checksum_address(token),
                                               [Web3.to_checksum_address(c) for c in clients], amounts)
        return self._sign(operator, call, nonce, gas_price, RELEASE_GAS_BASE + RELEASE_GAS_PER_MOVEMENT * len(clients))

    def _sign(self, operator: LocalAccount, call, nonce: int, gas_price: int, gas: int) -> SignedTx:
        tx = call.build_transaction({"from": operator.address, "nonce": nonce, "gas": gas, "gasPrice": gas_price,
                                     "chainId": self.w3.eth.chain_id})
        signed = operator.sign_transaction(tx)
        return SignedTx(tx_hash=signed.hash.to_0x_hex(), raw=bytes(signed.raw_transaction), nonce=nonce)

    def send(self, signed: SignedTx) -> str:
        return self.w3.eth.send_raw_transaction(HexBytes(signed.raw)).to_0x_hex()

    def pending(self, tx_hash: str) -> bool:
        """The node holds the transaction but has not mined it."""
        try:
            return self.w3.eth.get_transaction(tx_hash)["blockNumber"] is None
        except TransactionNotFound:
            return False

    def receipt(self, tx_hash: str) -> dict | None:
        try:
            return dict(self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None
