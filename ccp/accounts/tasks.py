from celery import shared_task

from ccp.accounts.services import signin_records_sweep
from ccp.clock import utcnow


@shared_task(name="accounts.sweep")
def signin_records_sweep_task() -> dict[str, int]:
    """Beat: delete expired sign-in challenges and dead API tokens, in bounded batches. Safe twice."""
    return signin_records_sweep(now=utcnow())
