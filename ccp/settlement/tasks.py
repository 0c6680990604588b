"""Beat tasks of the chain loops. They do nothing until CCP_CHAIN_URL is set and FundLock is deployed."""

from celery import shared_task
from django.conf import settings

from ccp.clock import utcnow
from ccp.settlement.chain.connect import fund_lock_client, operator_account
from ccp.settlement.models import ChainContract
from ccp.settlement.services import deposits_monitor, reconciliation_run, settlement_confirm, settlement_submit


def _chain():
    deployed = ChainContract.objects.filter(name="FundLock").first()
    if not settings.CCP_CHAIN_URL or deployed is None:
        return None, None
    return fund_lock_client(settings.CCP_CHAIN_URL, deployed.address), deployed


@shared_task(name="settlement.monitor_deposits")
def deposits_monitor_task() -> int | str:
    chain, deployed = _chain()
    if chain is None:
        return "chain not configured"
    return deposits_monitor(chain=chain, now=utcnow(), start_block=deployed.deployed_block)


def _operator():
    """The operator account and the house address (the operator's own unless set), or None."""
    if not settings.CCP_CHAIN_OPERATOR_KEY:
        return None
    operator = operator_account(settings.CCP_CHAIN_OPERATOR_KEY)
    return operator, settings.CCP_CHAIN_HOUSE_ADDRESS or operator.address


@shared_task(name="settlement.submit")
def settlement_submit_task() -> int | str:
    chain, _ = _chain()
    if chain is None or (signer := _operator()) is None:
        return "chain not configured"
    operator, house = signer
    return len(settlement_submit(chain=chain, operator=operator, house=house, now=utcnow()))


@shared_task(name="settlement.confirm")
def settlement_confirm_task() -> dict | str:
    chain, _ = _chain()
    if chain is None or (signer := _operator()) is None:
        return "chain not configured"
    operator, house = signer
    return settlement_confirm(chain=chain, now=utcnow(), operator=operator, house=house)


@shared_task(name="settlement.reconcile")
def reconciliation_task() -> list[str] | str:
    """Bring the deposit edge up to the confirmed head first: the comparison is made at that block."""
    chain, deployed = _chain()
    if chain is None:
        return "chain not configured"
    now = utcnow()
    deposits_monitor(chain=chain, now=now, start_block=deployed.deployed_block)
    return reconciliation_run(chain=chain, now=now)
