"""Operator nonces under concurrency: two settlement workers never share a nonce, also on the
first use of an address (no row yet), against a real database and an eth-tester chain."""

import threading
import time

import pytest
from django.db import connection, transaction
from eth_account import Account
from web3 import EthereumTesterProvider, Web3

from ccp.settlement.models import OperatorNonce
from ccp.settlement.services import operator_nonce_take

pytestmark = pytest.mark.django_db(transaction=True)


def _race(address: str, w3: Web3, workers: int) -> tuple[list[int], list[BaseException]]:
    start, taken, errors = threading.Barrier(workers), [], []

    def worker() -> None:
        try:
            start.wait()
            with transaction.atomic():
                taken.append(operator_nonce_take(address=address, w3=w3))
                time.sleep(0.2)  # hold the transaction: the others look for the row meanwhile
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken, errors


@pytest.mark.parametrize("existing", [False, True], ids=["first use", "row exists"])
def test_concurrent_workers_take_distinct_consecutive_nonces(existing):
    w3 = Web3(EthereumTesterProvider())
    operator = Account.create()
    funder = w3.eth.accounts[0]
    w3.eth.send_transaction({"from": funder, "to": operator.address, "value": 10**18})
    for n in range(2):  # the operator has sent two transactions: its next nonce on chain is 2
        signed = Account.sign_transaction({"to": funder, "value": 0, "gas": 21000, "gasPrice": 10**9, "nonce": n,
                                           "chainId": w3.eth.chain_id}, operator.key)
        w3.eth.send_raw_transaction(signed.raw_transaction)
    address = operator.address.lower()
    if existing:
        OperatorNonce.objects.create(address=address, next_nonce=2)
    taken, errors = _race(address, w3, workers=3)
    assert errors == []
    assert sorted(taken) == [2, 3, 4]
    assert OperatorNonce.objects.get(address=address).next_nonce == 5
