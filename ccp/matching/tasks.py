import logging
from decimal import Decimal

from celery import chain, shared_task
from django.conf import settings

from ccp.clock import utcnow
from ccp.matching.auction import AuctionSettings
from ccp.matching.selectors import auctions_to_resume, pairs_with_open_orders
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.money import money_str

logger = logging.getLogger(__name__)


def auction_settings() -> AuctionSettings:
    return AuctionSettings(time_limit_s=Decimal(settings.CCP_AUCTION_TIME_LIMIT_SECONDS),
                           mip_rel_gap=Decimal(settings.CCP_AUCTION_MIP_GAP))


def auction_chain(auction_id: int):
    """close -> solve -> apply, each stage idempotent; pushes go out when apply commits."""
    return chain(auction_close_task.si(auction_id), auction_solve_task.si(auction_id),
                 auction_apply_task.si(auction_id))


@shared_task(name="matching.start_auctions")
def auctions_start_task() -> list[int]:
    """Beat: open one auction per pair with open orders and run its chain; resume stalled auctions."""
    now = utcnow()
    started = []
    for auction_id in auctions_to_resume(now=now, older_than=settings.CCP_AUCTION_RESUME_AFTER):
        auction_chain(auction_id).apply_async()
    for pair in pairs_with_open_orders():
        auction = auction_open(pair=pair, now=now, interval=settings.CCP_AUCTION_INTERVAL)
        if auction is not None:
            auction_chain(auction.pk).apply_async()
            started.append(auction.pk)
    return started


@shared_task(name="matching.close")
def auction_close_task(auction_id: int) -> str:
    return auction_close(auction_id=auction_id, now=utcnow(), settings=auction_settings()).state


@shared_task(name="matching.solve")
def auction_solve_task(auction_id: int) -> str:
    return auction_solve(auction_id=auction_id, now=utcnow()).state


@shared_task(name="matching.apply")
def auction_apply_task(auction_id: int) -> str:
    auction = auction_apply(auction_id=auction_id, now=utcnow())
    logger.info("auction %s %s: %s orders, %s fills, prices %s, welfare %s (%s, %s s)", auction.pk, auction.group,
                auction.orders_count, auction.fills_count, (auction.result_document or {}).get("prices", {}),
                money_str(auction.welfare or 0), auction.status, (auction.timings or {}).get("total_s"))
    return auction.state
