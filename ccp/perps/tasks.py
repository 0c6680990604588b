from celery import shared_task

from ccp.clock import utcnow
from ccp.perps.services import perpetuals_fund, perpetuals_margin_call


@shared_task(name="perps.fund")
def perpetuals_fund_task() -> list[str]:
    """Beat (every minute): settle each perpetual's variation and funding once per funding time, as soon
    as it has a fresh mark, then send the isolated positions' margin calls. Safe to run twice and concurrently
    (the contract's row lock, the funding time kept; a call at most every CCP_MARGIN_CALL_REPEAT_SECONDS)."""
    now = utcnow()
    funded = perpetuals_fund(now=now)
    perpetuals_margin_call(now=now)
    return funded
