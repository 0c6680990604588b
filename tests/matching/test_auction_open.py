"""One auction not applied per pair, kept by a partial unique constraint: openers racing in their own
threads and connections open exactly one, and the others get None rather than an error."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import IntegrityError, connections, transaction

from ccp.matching.models import Auction
from ccp.matching.services import auction_open
from tests.conftest import NOW
from tests.factories import PairFactory

OPENERS = 8


@pytest.mark.django_db(transaction=True)
def test_openers_racing_open_one_auction():
    pair = PairFactory()
    start = threading.Barrier(OPENERS)

    def open_one(n: int) -> int | None:
        try:
            start.wait()
            # each in its own time slot: only the one-unapplied-per-pair rule can stop the others
            auction = auction_open(pair=pair, now=NOW + timedelta(seconds=10 * n), interval=timedelta(seconds=10))
            return auction and auction.pk
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=OPENERS) as pool:
        opened = list(pool.map(open_one, range(OPENERS)))

    assert len([pk for pk in opened if pk]) == 1 and opened.count(None) == OPENERS - 1
    assert Auction.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_a_second_auction_while_one_is_not_applied():
    pair = PairFactory()
    first = auction_open(pair=pair, now=NOW, interval=timedelta(seconds=10))
    with pytest.raises(IntegrityError), transaction.atomic():
        Auction.objects.create(group=first.group, slot=NOW + timedelta(seconds=10), opened_at=NOW)
    Auction.objects.filter(pk=first.pk).update(state="applied", input_document={}, result_document={})
    assert auction_open(pair=pair, now=NOW + timedelta(seconds=10), interval=timedelta(seconds=10)) is not None
