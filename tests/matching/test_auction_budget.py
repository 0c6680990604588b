"""The auction's budget is what the client has available to it: its lockups of the portfolios traded,
what its orders in the auction hold, and a reservation of its free collateral up to their stand-alone
worst cases, set aside at the close and released at the apply (ccp.matching.services)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.matching.models import AuctionReservation
from ccp.matching.services import auction_apply
from ccp.system.invariants import invariants_check
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, FundLockFactory, PairFactory
from tests.matching.netting import auction_run, available_of, available_set, place, position_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def series():
    pair = PairFactory()
    return {"C100": ContractFactory(pair=pair), "C110": ContractFactory(pair=pair, strike_px=D("110000"))}


def funded(currency, amount="1000000"):
    client = ClientFactory()
    FundLockFactory(client=client, currency=currency, fundlock=D(amount))
    return client


def budget_of(auction, client) -> D:
    (spec,) = [c for c in auction.input_document["clients"] if c["id"] == client.address]
    return D(spec["budget"])


def assert_invariants():
    report = invariants_check()
    assert report.ok, report.violations


def test_the_close_reserves_free_collateral_up_to_the_stand_alone_worst_cases_and_the_apply_releases_it(series):
    currency = series["C100"].collateral
    trader = funded(currency)
    position_open(trader, series["C110"], "1", "1000")
    available_set(trader, currency, "100000")
    order = place(trader, series["C100"], "sell", "4000", "1")  # holds 6000; stand-alone 46000
    assert order.order_value == D("6000")

    auction = auction_run(series["C100"].pair, NOW + timedelta(seconds=10), apply=False)

    # lockups 0 (a long call) + held 6000 + reserved min(94000, 46000 - 6000)
    assert budget_of(auction, trader) == D("46000")
    reservation = AuctionReservation.objects.get(auction=auction, client=trader)
    assert (reservation.amount, reservation.held, reservation.standalone, reservation.bound) == (
        D("40000"), D("6000"), D("46000"), False)
    assert FundLock.objects.get(client=trader, currency=currency).order_value == D("46000")
    assert available_of(trader, currency) == D("54000")
    assert_invariants()  # the fund lock's order value = its orders' stored values + the reservation

    for _ in range(2):
        auction_apply(auction_id=auction.pk, now=NOW + timedelta(seconds=11))

    reservation.refresh_from_db()
    assert reservation.released_at == NOW + timedelta(seconds=11)
    assert FundLock.objects.get(client=trader, currency=currency).order_value == D("6000")
    assert available_of(trader, currency) == D("94000")
    assert_invariants()


def test_a_bound_client_meets_the_engine_and_the_apply_keeps_its_available_collateral_at_zero(series):
    """A client long the 110000 call with exactly what two sells of the 100000 call hold (6000 each,
    each netted against the long call alone): together they would need far more. The auction's budget
    binds: it fills what fits, and the order it leaves open keeps only what the client has left."""
    currency = series["C100"].collateral
    trader = funded(currency)
    position_open(trader, series["C110"], "1", "1000")
    available_set(trader, currency, "12000")
    first = place(trader, series["C100"], "sell", "4000", "1")
    second = place(trader, series["C100"], "sell", "4000", "1")
    assert (first.order_value, second.order_value, available_of(trader, currency)) == (D("6000"), D("6000"), 0)
    buyer = funded(currency)
    place(buyer, series["C100"], "buy", "4000", "2")  # at the sells' limit: their premium is as budgeted

    auction = auction_run(series["C100"].pair, NOW + timedelta(seconds=10), apply=False)
    reservation = AuctionReservation.objects.get(auction=auction, client=trader)
    assert (reservation.amount, reservation.bound) == (0, True)
    assert budget_of(auction, trader) == D("12000")
    assert trader.address in auction.result_document.get("binding_clients", [trader.address])
    auction_apply(auction_id=auction.pk, now=NOW + timedelta(seconds=11))

    first.refresh_from_db()
    second.refresh_from_db()
    sold = first.filled_quantity + second.filled_quantity
    assert D(1) <= sold < D(2)  # one fills; the other only as far as the collateral goes
    (left,) = [o for o in (first, second) if o.state == "partially_filled"]
    assert left.order_value < D("6000")  # trimmed to what the client has left
    assert available_of(trader, currency) == 0
    assert_invariants()


def test_two_pairs_auctions_on_one_currency_never_over_commit_it(series):
    """The reservation is a locked write on the fund lock: a second pair's auction closing after the
    first sees only what is left."""
    currency = series["C100"].collateral
    other = PairFactory(base__symbol="ETH", quote=series["C100"].pair.quote)
    eth = {"C100": ContractFactory(pair=other), "C110": ContractFactory(pair=other, strike_px=D("110000"))}
    trader = funded(currency)
    for contracts in (series, eth):
        position_open(trader, contracts["C110"], "1", "1000")
    available_set(trader, currency, "62000")
    for contracts in (series, eth):
        assert place(trader, contracts["C100"], "sell", "4000", "1").order_value == D("6000")  # may need 46000
    assert available_of(trader, currency) == D("50000")

    first = auction_run(series["C100"].pair, NOW + timedelta(seconds=10), apply=False)
    second = auction_run(other, NOW + timedelta(seconds=10), apply=False)

    assert AuctionReservation.objects.get(auction=first, client=trader).amount == D("40000")
    reservation = AuctionReservation.objects.get(auction=second, client=trader)
    assert (reservation.amount, reservation.bound) == (D("10000"), True)
    assert (budget_of(first, trader), budget_of(second, trader)) == (D("46000"), D("16000"))
    assert available_of(trader, currency) == 0
    assert_invariants()
    for auction in (second, first):
        auction_apply(auction_id=auction.pk, now=NOW + timedelta(seconds=11))
    assert available_of(trader, currency) == D("50000")
    assert_invariants()


def test_a_partly_filled_netted_order_keeps_its_stored_hold(series):
    """The remainder of a netted order keeps what it held at entry (at most its stand-alone worst case):
    the hold depended on the positions then, so it is never recomputed stand-alone."""
    currency = series["C100"].collateral
    trader = funded(currency)
    position_open(trader, series["C110"], "1", "1000")
    available_set(trader, currency, "100000")
    order = place(trader, series["C100"], "sell", "4000", "1")
    place(funded(currency), series["C100"], "buy", "4000", "0.5")

    auction_run(series["C100"].pair, NOW + timedelta(seconds=10))

    order.refresh_from_db()
    assert (order.state, order.filled_quantity, order.order_value) == ("partially_filled", D("0.5"), D("6000"))
    # 100000 free - 6000 held + 2000 premium received - 5000 locked (long 110 call, short 0.5 of the 100 call)
    assert available_of(trader, currency) == D("91000")
    assert_invariants()


def test_worst_cases_finer_than_storage_precision_are_rounded_up_not_refused():
    """A tick of 10^-9 and a lot of 10^-10 make a stand-alone worst case with 19 decimal places: the close
    rounds it up as entry did, and the order's hold covers it (no reservation)."""
    contract = ContractFactory(tick_size=D("0.000000001"), lot_size=D("0.0000000001"))
    trader = funded(contract.collateral)
    order = place(trader, contract, "sell", "1.000000001", "0.0000000003")
    assert order.order_value == D("0.0000149997")  # (50000 - 1.000000001) x 3e-10 = 0.0000149996999999997, up

    auction = auction_run(contract.pair, NOW + timedelta(seconds=10), apply=False)

    assert budget_of(auction, trader) == order.order_value
    assert not AuctionReservation.objects.filter(auction=auction).exists()
