from celery import shared_task

from ccp.book.tasks import book_prices_moved
from ccp.clock import utcnow
from ccp.prices.services import spot_prices_load


@shared_task(name="prices.load_spot")
def spot_prices_load_task() -> int:
    """Beat: the current price of every live pair from each enabled venue, then the matchers of the
    continuous contracts with stop or take-profit orders waiting on a mark or index price. Safe to run
    twice."""
    loaded = len(spot_prices_load(now=utcnow()))
    book_prices_moved()
    return loaded
