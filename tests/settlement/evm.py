"""Helpers for settlement tests on the in-process EVM (eth-tester): deposits, booked movements, and
transactions sent from the operator's key behind the backend's back."""

import threading
from decimal import Decimal

from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

from ccp.accounts.models import FundLock
from ccp.settlement.models import CashMovement
from tests.conftest import NOW

GAS = 5_000_000


class SerialProvider(EthereumTesterProvider):
    """The in-process EVM is not thread-safe: requests from several workers' threads take turns."""

    def __init__(self) -> None:
        super().__init__()
        self._turn = threading.Lock()

    def make_request(self, method, params):
        with self._turn:
            return super().make_request(method, params)


def deposit(w3, token, fund_lock, who, units):
    token.functions.mint(who, units).transact({"from": w3.eth.accounts[0], "gas": GAS})
    token.functions.approve(fund_lock.address, units).transact({"from": who, "gas": GAS})
    fund_lock.functions.deposit(token.address, units).transact({"from": who, "gas": GAS})


def book(currency, origin_ref: str, amounts: dict[str, Decimal], origin: str = "auction") -> list[CashMovement]:
    """Cash movements of one origin as an auction books them: settle value moves at once."""
    movements = []
    for address, amount in amounts.items():
        fund = FundLock.objects.get(client__address=address.lower(), currency=currency)
        movements.append(CashMovement.objects.create(client=fund.client, currency=currency, amount=amount,
                                                     origin=origin, origin_ref=origin_ref, created_at=NOW))
        FundLock.objects.filter(pk=fund.pk).update(settle_value=fund.settle_value + amount)
    return movements


def operator_send(w3: Web3, operator: LocalAccount, nonce: int | None = None) -> str:
    """A transaction from the operator's key that the backend knows nothing of (a zero transfer to itself)."""
    nonce = w3.eth.get_transaction_count(operator.address) if nonce is None else nonce
    signed = operator.sign_transaction({"to": operator.address, "value": 0, "gas": 21_000, "gasPrice": w3.eth.gas_price,
                                        "nonce": nonce, "chainId": w3.eth.chain_id})
    return w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


def assert_settled_once(client, token, movements) -> None:
    """Every movement has exactly one confirmed tracking, its batch id is applied on chain, and each
    fund lock equals the contract's balance with nothing left in settle value."""
    from ccp.settlement.models import CashMovementTracking

    for movement in movements:
        confirmed = list(CashMovementTracking.objects.filter(cash_movement=movement, state="confirmed"))
        assert len(confirmed) == 1, f"movement {movement.pk}: {len(confirmed)} confirmed trackings"
        assert client.applied(bytes.fromhex(confirmed[0].batch_id[2:]))
    for fund in FundLock.objects.select_related("client"):
        assert fund.settle_value == 0
        assert client.balance(token.address, fund.client.address) == int(fund.fundlock * 10**6)
