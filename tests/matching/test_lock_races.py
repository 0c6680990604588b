"""The halt, validations, cancels and an auction's apply racing on one pair, each in its own thread and
database connection: no deadlock, and the books balance whatever the interleaving (ccp.locks)."""

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connections

from ccp.contracts.models import Contract
from ccp.contracts.services import contracts_halt
from ccp.matching.models import Auction
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.models import Order
from ccp.orders.services import order_cancel, order_validate
from ccp.orders.states import BOOK_STATES
from tests.factories import ClientFactory, ContractFactory, FundLockFactory, PairFactory, ReceivedOrderFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db(transaction=True)

EXPIRING = datetime(2026, 12, 1, tzinfo=UTC).date()  # trading ends at 00:00 UTC on this day
HALT = datetime(2026, 12, 1, tzinfo=UTC)
BEFORE = HALT - timedelta(seconds=1)  # the auction's apply and the traders, just before midnight
CLIENTS = 12


def _place(client, contract, side, price, quantity="0.1", *, validate=True):
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity),
                                 created_at=BEFORE, updated_at=BEFORE)
    if validate:
        order_validate(order_id=order.pk, now=BEFORE - timedelta(minutes=1))
    return order


def _market(round_: int):
    """A pair with a contract whose trading ends at HALT and one trading on; a solved auction holding
    crossing orders of every client on both; then orders to cancel and orders to validate on both."""
    pair = PairFactory(base__symbol=f"B{round_}")
    expiring = ContractFactory(pair=pair, expiry_date=EXPIRING)
    later = ContractFactory(pair=pair, expiry_date=EXPIRING + timedelta(days=30))
    clients = [ClientFactory() for _ in range(CLIENTS)]
    for client in clients:
        FundLockFactory(client=client, currency=pair.quote, fundlock=D("1000000"))
    for n, client in enumerate(clients):
        for contract in (expiring, later):
            _place(client, contract, "buy" if n % 2 else "sell", "2000" if n % 2 else "1900")
    auction = auction_open(pair=pair, now=BEFORE - timedelta(seconds=30), interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=BEFORE - timedelta(seconds=30), settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=BEFORE - timedelta(seconds=20))
    assert Auction.objects.get(pk=auction.pk).fills_count == 2 * CLIENTS
    to_cancel = [_place(client, contract, "buy", "1500") for client in clients for contract in (expiring, later)]
    to_validate = [_place(client, contract, side, "1700", validate=False)
                   for client in clients for contract in (expiring, later) for side in ("buy", "sell")]
    return auction, expiring, to_cancel, to_validate


def _run(job) -> None:
    try:
        job()
    finally:
        connections.close_all()  # each thread has its own connection


@pytest.mark.parametrize("round_", range(3))
def test_the_halt_validations_cancels_and_an_apply_racing_never_deadlock(round_):
    auction, expiring, to_cancel, to_validate = _market(round_)
    jobs = [lambda o=o: order_validate(order_id=o.pk, now=BEFORE) for o in to_validate]
    jobs += [lambda o=o: order_cancel(client=o.client, order_id=o.pk, now=BEFORE) for o in to_cancel]
    random.Random(round_).shuffle(jobs)
    # The apply and the halt start first; validations and cancels pour in around them.
    jobs[2:2] = [lambda: auction_apply(auction_id=auction.pk, now=BEFORE), lambda: contracts_halt(now=HALT)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(_run, job) for job in jobs]:
            future.result()  # a deadlock victim raises here

    assert Auction.objects.get(pk=auction.pk).state == "applied"
    assert Contract.objects.get(pk=expiring.pk).state == "halted"
    assert not Order.objects.filter(state="received").exists()
    assert not Order.objects.filter(contract=expiring, state__in=BOOK_STATES).exists()
    assert not Order.objects.filter(pk__in=[o.pk for o in to_cancel], state__in=BOOK_STATES).exists()
    assert_books_balance()
