import logging

from celery import shared_task

from ccp.clock import utcnow
from ccp.contracts.selectors import expiries_to_settle
from ccp.contracts.services import contracts_expire, contracts_halt, expiry_settle
from ccp.prices.services import settlement_price_fix
from ccp.system.models import AlertKind
from ccp.system.services import alert_raise

logger = logging.getLogger(__name__)


@shared_task(name="contracts.lifecycle")
def contracts_lifecycle_task() -> dict:
    """Beat: halt at 00:00 UTC of the expiry day, expire at 12:00, and from 12:10 fix the settlement
    price and book the payoffs. Every step is idempotent; a missing price, or an auction still holding
    orders of the expiry, is waited for until a later run."""
    return contracts_lifecycle(now=utcnow())


def contracts_lifecycle(*, now, venue_factory=None) -> dict:
    halted = contracts_halt(now=now)
    expired = contracts_expire(now=now)
    settled, waiting = [], []
    for pair, expiry_date, expires_at in expiries_to_settle(now=now):
        kwargs = {"venue_factory": venue_factory} if venue_factory else {}
        price = settlement_price_fix(pair=pair, at=expires_at, now=now, **kwargs)
        if price is None:
            continue
        try:
            movements = expiry_settle(pair=pair, expiry_date=expiry_date, settlement_px=price.price, now=now)
        except ValueError as exc:  # its payoffs cannot be booked as they stand: operators look, other pairs go on
            logger.error("expiry %s %s not settled: %s", pair, expiry_date, exc)
            alert_raise(key=f"expiry:{pair}:{expiry_date.isoformat()}", kind=AlertKind.EXPIRY_SETTLEMENT,
                        message=f"payoffs of {pair} {expiry_date} at {price.price} not booked: {exc}", now=now)
            continue
        if movements is None:  # an auction still holds orders of these contracts: its apply cancels them
            logger.info("expiry %s %s waits for an auction holding its orders", pair, expiry_date)
            waiting.append(f"{pair} {expiry_date}")
            continue
        logger.info("settled %s %s at %s: %d payoffs", pair, expiry_date, price.price, len(movements))
        settled.append(f"{pair} {expiry_date}")
    return {"halted": [c.symbol for c in halted], "expired": expired, "settled": settled, "waiting": waiting}
