from celery import shared_task

from ccp.book.tasks import book_prices_moved
from ccp.clock import utcnow
from ccp.perps.services import perpetual_liquidations_run, perpetual_marks_update
from ccp.prices.services import spot_prices_load


@shared_task(name="prices.load_spot")
def spot_prices_load_task() -> int:
    """Beat: the current price of every live pair from each enabled venue, the perpetuals' marks (and the
    liquidation of the positions each new mark crossed), then the
    matchers of the continuous contracts with stop or take-profit orders waiting on a mark or index price.
    Safe to run twice."""
    now = utcnow()
    loaded = len(spot_prices_load(now=now))
    for mark in perpetual_marks_update(now=now):  # a new mark: liquidate what it crossed
        perpetual_liquidations_run(contract_id=mark.contract_id, now=now)
    book_prices_moved()
    return loaded
