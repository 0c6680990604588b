from celery import shared_task

from ccp.book.tasks import book_prices_moved
from ccp.clock import utcnow
from ccp.perps.services import perpetual_marks_update
from ccp.prices.services import spot_prices_load


@shared_task(name="prices.load_spot")
def spot_prices_load_task() -> int:
    """Beat: the current price of every live pair from each enabled venue, the perpetuals' marks, then the
    matchers of the continuous contracts with stop or take-profit orders waiting on a mark or index price.
    Safe to run twice."""
    now = utcnow()
    loaded = len(spot_prices_load(now=now))
    perpetual_marks_update(now=now)
    book_prices_moved()
    return loaded
