"""Deploy the FundLock contract (and, for tests and the demo, a TestToken as a collateral currency)
to a node, and record the addresses in the database.

    manage.py chain_deploy --url http://127.0.0.1:8545 --operator-key 0x... [--demo-token USDC]

Idempotent: an existing FundLock record for the node's chain is kept.
"""

from django.core.management.base import BaseCommand, CommandError

from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.connect import operator_account, web3_for
from ccp.settlement.models import ChainContract, OperatorNonce
from ccp.settlement.services import DEPOSITS_EDGE
from ccp.system.models import Edge


class Command(BaseCommand):
    help = "Deploy FundLock (and a demo ERC-20) and record the addresses."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True)
        parser.add_argument("--operator-key", required=True, help="pays for and operates the contract")
        parser.add_argument("--demo-token", help="also deploy a TestToken for this currency symbol and use it")

    def handle(self, *args, url, operator_key, demo_token=None, **options):
        w3 = web3_for(url)
        if not w3.is_connected():
            raise CommandError(f"no node answers at {url}")
        operator = operator_account(operator_key)
        chain_id = w3.eth.chain_id
        existing = ChainContract.objects.filter(name="FundLock", chain_id=chain_id).first()
        if existing and w3.eth.get_code(w3.to_checksum_address(existing.address)):
            self.stdout.write(f"FundLock already deployed at {existing.address}")
            return
        if existing:  # the node lost its state (a fresh dev chain): deploy again, read deposits from its start,
            # and take the operator's nonces from the chain again (the stored one counts the lost transactions)
            existing.delete()
            Edge.objects.filter(name=DEPOSITS_EDGE).delete()
            OperatorNonce.objects.filter(address=operator.address.lower()).delete()
        if demo_token:
            currency = Currency.objects.get(symbol=demo_token)
            token = self._deploy(w3, operator, "TestToken", f"ccp demo {demo_token}", demo_token, currency.decimals)
            currency.token_address = token[0]
            currency.save(update_fields=["token_address"])
        address, block = self._deploy(w3, operator, "FundLock", operator.address)
        ChainContract.objects.create(name="FundLock", address=address, chain_id=chain_id, deployed_block=block,
                                     created_at=utcnow())
        self.stdout.write(f"FundLock deployed at {address} (block {block}, chain {chain_id})")

    def _deploy(self, w3, operator, name, *args):
        artifact = load_artifact(name)
        tx = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor(*args).build_transaction(
            {"from": operator.address, "nonce": w3.eth.get_transaction_count(operator.address), "gas": 3_000_000,
             "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id})
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction), timeout=60)
        if receipt.status != 1:
            raise CommandError(f"deploying {name} failed")
        return receipt.contractAddress.lower(), receipt.blockNumber
