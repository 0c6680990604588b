"""Order entry, withdrawals, the continuous book and an auction's close and apply racing on one
currency, each in its own thread and database connection: available collateral never drops below zero
(the database refuses it: any such write would fail its job), the books balance whatever the
interleaving, and each reservation is released once though the apply runs twice at once."""

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connections

from ccp.accounts.models import FundLock
from ccp.book.services import book_match
from ccp.errors import ApplicationError
from ccp.matching.models import Auction, AuctionReservation
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.services import order_validate
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from ccp.system.invariants import invariants_check
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, FundLockFactory, PairFactory, ReceivedOrderFactory
from tests.matching.netting import auction_run, available_set, place

pytestmark = pytest.mark.django_db(transaction=True)

TRADERS = 6
AT = NOW + timedelta(seconds=30)


def _run(job) -> str:
    try:
        job()
        return "done"
    except ApplicationError as exc:  # a withdrawal refused: insufficient_collateral
        return exc.code
    finally:
        connections.close_all()  # each thread has its own connection


def _race(jobs, seed: int) -> list[str]:
    random.Random(seed).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return [future.result() for future in [pool.submit(_run, job) for job in jobs]]  # a failure raises here


def _received(client, contract, side, price, quantity="1"):
    return ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity),
                                created_at=AT, updated_at=AT)


def _entry(traders, c100, continuous, n: int) -> list:
    """Orders to validate (each needs 6000 of a trader's 8000 free, or less), withdrawals of 3000, and
    continuous orders (a buy holding 1000) matched by the continuous contract's matcher."""
    entered = [_received(t, c100, "sell", "4000") for t in traders]
    jobs = [lambda o=o: order_validate(order_id=o.pk, now=AT) for o in entered]
    jobs += [lambda t=t, k=k: withdrawal_request(client=t, ask=WithdrawalAsk(f"race-{n}-{k}", c100.collateral,
                                                                               D("3000")), now=AT)
             for k, t in enumerate(traders)]
    for t in traders:
        _received(t, continuous, "buy", "1000")
    jobs.append(lambda: book_match(contract_id=continuous.pk, now=AT))
    return jobs


def _assert_sound():
    report = invariants_check()
    assert report.ok, report.violations
    assert all(f.available >= 0 for f in FundLock.objects.all())


@pytest.mark.parametrize("seed", range(2))
def test_entry_withdrawals_the_book_and_an_auction_racing_never_over_commit(seed):
    pair = PairFactory(base__symbol=f"R{seed}")
    c100, c110 = ContractFactory(pair=pair), ContractFactory(pair=pair, strike_px=D("110000"))
    currency = c100.collateral
    currency.token_address = "0x" + "11" * 20
    currency.save()
    continuous = ContractFactory(pair=PairFactory(base__symbol=f"Q{seed}", quote=currency),
                                 trading_mode="continuous")
    traders = [ClientFactory() for _ in range(TRADERS)]
    seller = ClientFactory()
    FundLockFactory(client=seller, currency=currency, fundlock=D("10000000"))
    for trader in traders:  # each long the 110000 call
        FundLockFactory(client=trader, currency=currency, fundlock=D("1000000"))
        place(trader, c110, "buy", "1000", "1")
    place(seller, c110, "sell", "1000", str(TRADERS))
    auction_run(pair)
    for trader in traders:
        available_set(trader, currency, "20000")
        for _ in range(2):
            assert place(trader, c100, "sell", "4000", "1").order_value == D("6000")  # 8000 left free
    buyer = ClientFactory()
    FundLockFactory(client=buyer, currency=currency, fundlock=D("10000000"))
    place(buyer, c100, "buy", "4000", "20")  # at the sellers' limit: no premium to spare
    auction = auction_open(pair=pair, now=AT, interval=timedelta(seconds=10))

    close = [lambda: auction_close(auction_id=auction.pk, now=AT, settings=auction_settings())] * 2
    _race(close + _entry(traders, c100, continuous, 1), seed)
    _assert_sound()
    assert Auction.objects.get(pk=auction.pk).state == "closed"
    assert AuctionReservation.objects.filter(auction=auction).count() <= TRADERS + 1

    auction_solve(auction_id=auction.pk, now=AT)
    apply = [lambda: auction_apply(auction_id=auction.pk, now=AT)] * 2
    _race(apply + _entry(traders, c100, continuous, 2), seed + 1)

    assert Auction.objects.get(pk=auction.pk).state == "applied"
    assert not AuctionReservation.objects.filter(auction=auction, released_at__isnull=True).exists()
    _assert_sound()  # the order values are the orders' stored values: each reservation released once
