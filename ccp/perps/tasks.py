from celery import shared_task

from ccp.clock import utcnow
from ccp.perps.services import perpetuals_fund


@shared_task(name="perps.fund")
def perpetuals_fund_task() -> list[str]:
    """Beat (every minute): settle each perpetual's variation and funding once per funding time, as soon
    as it has a fresh mark. Safe to run twice and concurrently (the contract's row lock, the funding time
    kept)."""
    return perpetuals_fund(now=utcnow())
