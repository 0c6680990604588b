"""Stalled auction chains are found for beat to resume: soon after their last stage, and a solve gets
the solver's time limit on top (so one running to its limit is not started twice)."""

from datetime import timedelta

import pytest
from django.conf import settings

from ccp.matching.models import Auction
from ccp.matching.selectors import auctions_to_resume
from tests.conftest import NOW

pytestmark = pytest.mark.django_db


def auction(slot_s: int, state: str, **stages) -> Auction:
    document = {} if state != "open" else None
    # one group each: a group has at most one unapplied auction
    return Auction.objects.create(group=f"P{slot_s}/USDC", slot=NOW + timedelta(seconds=slot_s), state=state,
                                  opened_at=NOW, input_document=document,
                                  result_document=document if state in ("solved", "applied") else None, **stages)


def test_a_stage_lost_more_than_the_resume_delay_ago_is_resumed_by_the_next_tick():
    closed_at, solved_at = NOW + timedelta(seconds=1), NOW + timedelta(seconds=2)
    never_closed = auction(0, "open")
    solving = auction(10, "closed", closed_at=closed_at)
    never_applied = auction(20, "solved", closed_at=closed_at, solved_at=solved_at)
    auction(30, "applied", closed_at=closed_at, solved_at=solved_at, applied_at=solved_at)
    resume_after, limit = timedelta(seconds=10), timedelta(seconds=10)

    def stalled(after_s: float) -> list[int]:
        return auctions_to_resume(now=NOW + timedelta(seconds=after_s), older_than=resume_after,
                                  solving_allowance=limit)

    assert stalled(9) == []
    assert stalled(12.5) == [never_closed.pk, never_applied.pk]
    assert stalled(20.5) == [never_closed.pk, never_applied.pk]  # the solve may still run to its limit
    assert stalled(21.5) == [never_closed.pk, solving.pk, never_applied.pk]


def test_by_default_a_lost_stage_is_resumed_within_30_s_after_the_solver_s_guard_with_beat_ticking():
    # the worst case: a stage lost just after a tick is found one resume delay (plus the solver's
    # guard while solving) later, at the next tick after that
    guard = timedelta(seconds=float(settings.CCP_AUCTION_TIME_LIMIT_SECONDS))
    worst = settings.CCP_AUCTION_RESUME_AFTER + guard + settings.CCP_AUCTION_INTERVAL
    assert worst - guard <= timedelta(seconds=30)
    solving = auction(0, "closed", closed_at=NOW)
    assert auctions_to_resume(now=NOW + worst, older_than=settings.CCP_AUCTION_RESUME_AFTER) == [solving.pk]
