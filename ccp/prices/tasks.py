from celery import shared_task

from ccp.clock import utcnow
from ccp.prices.services import spot_prices_load


@shared_task(name="prices.load_spot")
def spot_prices_load_task() -> int:
    """Beat: the current price of every live pair from each enabled venue. Safe to run twice."""
    return len(spot_prices_load(now=utcnow()))
