"""The demo faucet (``CCP_DEMO_FAUCET=1``, which ``bin/run`` sets): demo tokens and gas for a fresh wallet
on the development chain (anvil), so a trader can deposit without the operator's key.

The operator mints from its own account, the one settlement sends from: each mint takes the next nonce
from the operator's locked nonce row and is sent while the lock is held, so the nonce is only used once
the node has accepted the transaction (a refused one rolls the take back and leaves no gap for
settlement to trip on)."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ccp.contracts.models import Currency
from ccp.errors import ApplicationError
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.services import operator_nonce_take, token_units

FAUCET_TOKENS = Decimal(10_000)  # of each demo token, per request
FAUCET_GAS_WEI = 10**18  # the wallet's ether is topped up to 1 ETH (anvil_setBalance), never lowered
MINT_GAS = 200_000


@dataclass(frozen=True)
class FaucetMint:
    currency: str
    amount: Decimal
    tx_hash: str


@dataclass(frozen=True)
class FaucetGift:
    address: str
    gas_wei: int
    mints: list[FaucetMint]


def faucet_send(*, address: str, w3: Web3, operator: LocalAccount) -> FaucetGift:
    """Top the wallet's gas up to FAUCET_GAS_WEI and mint FAUCET_TOKENS of every token the CCP accepts
    (the demo deploys them as TestTokens, which the operator may mint). Locks the operator's nonce row
    for each mint. Not idempotent by design: the throttle bounds how often a wallet asks."""
    wallet = Web3.to_checksum_address(address)
    gas = max(w3.eth.get_balance(wallet), FAUCET_GAS_WEI)
    if "error" in w3.provider.make_request("anvil_setBalance", [wallet, hex(gas)]):
        raise ApplicationError("The faucet needs a development node (anvil).", code="chain_not_configured",
                               http_status=409)
    abi = load_artifact("TestToken")["abi"]
    mints = []
    for currency in Currency.objects.filter(token_address__isnull=False).order_by("symbol"):
        token = w3.eth.contract(address=Web3.to_checksum_address(currency.token_address), abi=abi)
        call = token.functions.mint(wallet, token_units(FAUCET_TOKENS, currency.decimals))
        with transaction.atomic():
            nonce = operator_nonce_take(address=operator.address.lower(), w3=w3)
            tx = call.build_transaction({"from": operator.address, "nonce": nonce, "gas": MINT_GAS,
                                         "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id})
            tx_hash = w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)
        mints.append(FaucetMint(currency=currency.symbol, amount=FAUCET_TOKENS, tx_hash="0x" + tx_hash.hex()
                                .removeprefix("0x")))
    return FaucetGift(address=wallet, gas_wei=gas, mints=mints)
