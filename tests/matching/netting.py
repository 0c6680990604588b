"""Helpers for the netting tests: positions opened through a real auction, collateral set to an exact
available amount."""

from datetime import timedelta
from decimal import Decimal as D

from django.db.models import F

from ccp.accounts.models import FundLock
from ccp.matching.models import Auction
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.models import Order
from ccp.orders.services import order_validate
from ccp.risk.collateral import available
from tests.conftest import NOW
from tests.factories import ClientFactory, FundLockFactory, ReceivedOrderFactory

BIG = D("10000000")


def place(client, contract, side, price, quantity, now=NOW) -> Order:
    """A received order, validated."""
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity),
                                 created_at=now, updated_at=now)
    order_validate(order_id=order.pk, now=now)
    order.refresh_from_db()
    return order


def auction_run(pair, now=NOW, *, apply: bool = True) -> Auction:
    """Open, close, solve (and apply) the pair's auction at ``now``."""
    auction = auction_open(pair=pair, now=now, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=now, settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=now)
    if apply:
        auction_apply(auction_id=auction.pk, now=now)
    return Auction.objects.get(pk=auction.pk)


def position_open(client, contract, quantity: str, price: str, now=NOW) -> None:
    """Give ``client`` a position of signed ``quantity`` through an auction against a well-funded
    counterparty (the client must have the collateral for it)."""
    other = ClientFactory()
    FundLockFactory(client=other, currency=contract.collateral, fundlock=BIG)
    q = D(quantity)
    mine = place(client, contract, "buy" if q > 0 else "sell", price, abs(q), now)
    theirs = place(other, contract, "sell" if q > 0 else "buy", price, abs(q), now)
    assert (mine.state, theirs.state) == ("accepted", "accepted"), (mine.reject_reason, theirs.reject_reason)
    auction_run(contract.pair, now)
    mine.refresh_from_db()
    assert mine.state == "filled"


def available_set(client, currency, amount) -> None:
    """Credit or debit the client's fund lock so that exactly ``amount`` is available."""
    fund_lock = FundLock.objects.get(client=client, currency=currency)
    FundLock.objects.filter(pk=fund_lock.pk).update(fundlock=F("fundlock") + D(amount) - available(fund_lock))


def available_of(client, currency) -> D:
    return available(FundLock.objects.get(client=client, currency=currency))
