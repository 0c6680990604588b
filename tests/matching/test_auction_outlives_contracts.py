"""An auction held across its contracts' end of trading (its worker killed mid-solve before 00:00 and the
chain resumed hours later): apply books nothing on contracts no longer trading and cancels those orders,
the rest of the auction applies, and the expiry waits for it instead of settling under it."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract
from ccp.contracts.tasks import contracts_lifecycle
from ccp.matching.models import Auction
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_submit, order_validate
from ccp.prices.models import VenueSymbol
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement
from tests.contracts.test_expiry_day import recorded_venues
from tests.factories import ContractFactory, FundLockFactory, PairFactory
from tests.ledger import assert_books_balance

pytestmark = pytest.mark.django_db

EXPIRY = datetime(2026, 11, 20, tzinfo=UTC).date()  # the recorded venue prices are for 12:00 that day
DAY_BEFORE = datetime(2026, 11, 19, 10, tzinfo=UTC)
SOLVED = datetime(2026, 11, 19, 23, 59, 50, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC)
NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def market():
    """A call expiring on EXPIRY, one expiring a month later, five funded traders."""
    pair = PairFactory()
    for name, symbol in (("gemini", "BTC/USD"), ("coinbase", "BTC/USD"), ("binance", "BTC/USDT")):
        VenueSymbol.objects.create(pair=pair, venue=name, symbol=symbol)
    expiring = ContractFactory(pair=pair, expiry_date=EXPIRY, strike_px=D("90000"))
    later = ContractFactory(pair=pair, expiry_date=EXPIRY + timedelta(days=28), strike_px=D("90000"))
    traders = [FundLockFactory(currency=pair.quote, fundlock=D("200000")).client for _ in range(5)]
    return pair, expiring, later, traders


def place(client, contract, side, price, quantity="0.5", now=DAY_BEFORE):
    order, _ = order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=f"{contract.pk}-{side}-{price}-{client.pk}", contract=contract, side=side, kind="limit",
        price=D(price), quantity=D(quantity)))
    order = order_validate(order_id=order.pk, now=now)
    assert order.state == "accepted"
    return order


def auction_until_solved(pair, now):
    auction = auction_open(pair=pair, now=now, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=now, settings=auction_settings())
    return auction_solve(auction_id=auction.pk, now=now)


def held_auction(pair, expiring, later, traders):
    """A day of trading on the expiring call (positions to settle), then an auction solved at 23:59:50
    holding crossing orders on both calls and a resting bid on the expiring one."""
    a, b, c, d, e = traders
    place(a, expiring, "buy", "2500")
    place(b, expiring, "sell", "2500")
    first = auction_until_solved(pair, DAY_BEFORE)
    auction_apply(auction_id=first.pk, now=DAY_BEFORE)
    orders = {"c_expiring": place(c, expiring, "buy", "2600"), "d_expiring": place(d, expiring, "sell", "2600"),
              "c_later": place(c, later, "buy", "3000"), "d_later": place(d, later, "sell", "3000"),
              "e_resting": place(e, expiring, "buy", "1000")}
    auction = auction_until_solved(pair, SOLVED)
    assert auction.fills_count == 4
    return auction, orders


def test_the_expiry_waits_for_an_auction_that_outlived_its_contracts(market, admin_client):
    pair, expiring, later, traders = market
    auction, orders = held_auction(pair, expiring, later, traders)
    result_before = Auction.objects.get(pk=auction.pk).result_document

    # 00:00 halts the expiring call; the auction still holds its orders there: they wait for its apply
    assert contracts_lifecycle(now=MIDNIGHT)["halted"] == [expiring.symbol]
    for key in ("c_expiring", "d_expiring", "e_resting"):
        order = Order.objects.get(pk=orders[key].pk)
        assert order.state == "accepted" and order.cancel_requested_at == MIDNIGHT
    # 12:00 expires it; from 12:10 the price is fixed, but the payoffs wait while the auction holds orders
    contracts_lifecycle(now=NOON + timedelta(minutes=5), venue_factory=recorded_venues())
    result = contracts_lifecycle(now=NOON + timedelta(minutes=10), venue_factory=recorded_venues())
    assert (result["settled"], result["waiting"]) == ([], [f"{pair} {EXPIRY}"])
    assert Contract.objects.get(pk=expiring.pk).state == "expired"
    assert not CashMovement.objects.filter(origin="expiry").exists()

    # the resumed chain applies at 12:11: nothing booked on the expired call, the later call trades
    applied = auction_apply(auction_id=auction.pk, now=NOON + timedelta(minutes=11))
    assert applied.state == "applied"
    assert applied.dropped == {"contracts": [expiring.symbol],
                               "fills": sorted([orders["c_expiring"].pk, orders["d_expiring"].pk]),
                               "cancelled": sorted(orders[k].pk for k in ("c_expiring", "d_expiring", "e_resting"))}
    assert Auction.objects.get(pk=auction.pk).result_document == result_before  # the result stays as solved
    page = admin_client.get(f"/admin/matching/auction/{auction.pk}/change/").content.decode()
    assert f"&quot;contracts&quot;: [&quot;{expiring.symbol}&quot;]" in page  # operators see what was dropped
    for key in ("c_expiring", "d_expiring", "e_resting"):
        order = Order.objects.get(pk=orders[key].pk)
        assert (order.state, order.filled_quantity, order.order_value) == ("cancelled", 0, 0)
        assert order.history.last().reason == "contract_halted"
    assert {o.state for o in Order.objects.filter(pk__in=[orders["c_later"].pk, orders["d_later"].pk])} == {"filled"}
    c, d = traders[2], traders[3]
    assert not Position.objects.filter(contract=expiring, client__in=[c, d]).exclude(quantity=0).exists()
    assert not CashMovement.objects.filter(contract=expiring, origin_ref=applied.ref).exists()
    assert Position.objects.get(contract=later, client=c).quantity == D("0.5")
    assert not Lockup.objects.filter(expiry_date=EXPIRY, client=d).exclude(amount=0).exists()
    assert_books_balance()

    # the next run settles the expiry: every position on the expired call closed, its lockups released
    assert contracts_lifecycle(now=NOON + timedelta(minutes=12), venue_factory=recorded_venues())["settled"]
    assert Contract.objects.get(pk=expiring.pk).state == "settled"
    assert not Position.objects.filter(contract=expiring).exclude(quantity=0).exists()
    assert not Lockup.objects.filter(expiry_date=EXPIRY).exclude(amount=0).exists()
    assert FundLock.objects.get(client=traders[4]).order_value == 0
    assert_books_balance()


@pytest.mark.parametrize("state", ["listed", "halted", "expired", "settled"])
def test_apply_books_no_fill_on_a_contract_no_longer_trading(market, state):
    pair, expiring, later, traders = market
    auction, orders = held_auction(pair, expiring, later, traders)
    # the contract's state when the chain resumes after 00:00 (listed: the halt has not run yet)
    Contract.objects.filter(pk=expiring.pk).update(state=state)

    applied = auction_apply(auction_id=auction.pk, now=MIDNIGHT + timedelta(seconds=1))

    assert applied.dropped["contracts"] == [expiring.symbol]
    assert applied.dropped["fills"] == sorted([orders["c_expiring"].pk, orders["d_expiring"].pk])
    for key in ("c_expiring", "d_expiring"):
        order = Order.objects.get(pk=orders[key].pk)
        assert (order.state, order.filled_quantity, order.order_value) == ("cancelled", 0, 0)
    c, d = traders[2], traders[3]
    assert not Position.objects.filter(contract=expiring, client__in=[c, d]).exclude(quantity=0).exists()
    assert not CashMovement.objects.filter(contract=expiring, origin_ref=applied.ref).exists()
    assert Order.objects.get(pk=orders["c_later"].pk).state == "filled"
    assert not Lockup.objects.filter(expiry_date=EXPIRY, client=d).exclude(amount=0).exists()
    assert_books_balance()


def test_an_auction_applied_in_time_drops_nothing(market):
    pair, expiring, later, traders = market
    auction, orders = held_auction(pair, expiring, later, traders)
    applied = auction_apply(auction_id=auction.pk, now=SOLVED + timedelta(seconds=5))
    assert applied.dropped == {}
    assert Order.objects.get(pk=orders["c_expiring"].pk).state == "filled"
    assert Position.objects.get(contract=expiring, client=traders[2]).quantity == D("0.5")
