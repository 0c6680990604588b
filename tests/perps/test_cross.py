"""Cross margin (``ccp.perps.cross``): an account's equity and requirement over all its cross positions in a
currency, the margin the rest of the account puts behind one position, its liquidation price at open (long and
short, with fees, against hand-worked numbers), and the selector that finds the accounts a new mark leaves at or
below their requirement."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.errors import ApplicationError
from ccp.matching.models import AuctionReservation
from ccp.orders.services import order_validate
from ccp.perps.cross import (
    CrossLeg,
    cross_accounts_below,
    cross_below,
    cross_cash,
    cross_unrealised_loss,
    leg_margin,
)
from ccp.perps.margin import bankruptcy_price, liquidation_price
from ccp.perps.services import perpetual_marks_update
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from tests.book.test_venue import match, send, state, trader
from tests.factories import ContractFactory
from tests.matching.netting import auction_run, available_set, place, position_open
from tests.perps.test_listing import quote
from tests.perps.test_trading import balance, perp  # noqa: F401 - fixture

RATE, FEE, TICK = D("0.005"), D("0.0005"), D("0.01")


def leg(contract_id, quantity, entry, mark, *, settle=None, margin=D(0), rate=RATE):
    return CrossLeg(contract_id=contract_id, position_id=contract_id, quantity=D(quantity), cost=D(quantity) * D(entry),
                    margin=margin, settle_px=D(settle or entry), mark=D(mark), rate=rate, fee_rate=FEE)


def test_a_single_cross_long_and_short_liquidate_where_the_hand_worked_numbers_say():
    # 10,000 of cash behind 1 BTC bought (or sold) at 50,000, R = 50,000: m = 10,000.
    # Long: (50,000 - 10,000) / (1 - 0.005 - 0.0005) = 40,221.2166... -> 40,221.21 (the first tick that liquidates)
    # Short: (50,000 + 10,000) / (1 + 0.005 + 0.0005) = 59,671.8050... -> 59,671.81; bankruptcy 40,000 and 60,000.
    for quantity, liquidation, bankruptcy in ((1, D("40221.21"), D(40000)), (-1, D("59671.81"), D(60000))):
        long = leg(1, quantity, 50000, 50000)
        margin = leg_margin(D(10000), [long], long)
        assert margin == D(10000)
        assert liquidation_price(quantity=long.quantity, entry_px=long.entry_px, margin=margin, rate=RATE,
                                 fee_rate=FEE, tick=TICK) == liquidation
        assert bankruptcy_price(quantity=long.quantity, entry_px=long.entry_px, margin=margin, tick=TICK) == bankruptcy


def test_the_other_cross_positions_count_with_their_pnl_less_their_requirement():
    # The same long beside 10 ETH short at 3,000 now marked 2,900 (entered at 3,100, R = 3,000, rate 1%):
    # its value relative to R is -10 x (2,900 - 3,000) = 1,000, its requirement (0.01 + 0.0005) x 10 x 2,900 = 304.5.
    # m = 10,000 + 1,000 - 304.5 = 10,695.5: the long liquidates at (50,000 - 10,695.5) / 0.9945 = 39,521.87... -> .87
    btc = leg(1, 1, 50000, 50000)
    eth = leg(2, -10, 3100, 2900, settle=3000, rate=D("0.01"))
    margin = leg_margin(D(10000), [btc, eth], btc)
    assert margin == D("10695.5")
    assert liquidation_price(quantity=D(1), entry_px=D(50000), margin=margin, rate=RATE, fee_rate=FEE,
                             tick=TICK) == D("39521.87")
    # The ETH leg's own entry counts too: seen from it, m = 10,000 - 10 x (3,100 - 3,000) + 0 - 275 = 8,725.
    assert leg_margin(D(10000), [btc, eth], eth) == D(10000) - D(1000) - D("275")


def test_an_account_is_below_exactly_when_its_equity_reaches_its_requirement():
    # 1 BTC long at 50,000 with 10,000: at 40,221.21 equity 221.21 <= requirement 0.0055 x 40,221.21 = 221.2166...
    at = leg(1, 1, 50000, "40221.21")
    found = cross_below(client_id=7, cash=D(10000), legs=[at], contract_id=1)
    assert found is not None and (found.equity, found.account_equity) == (D("221.21"), D("221.21"))
    assert found.requirement == D("0.0055") * D("40221.21") and found.margin == D(10000)
    assert cross_below(client_id=7, cash=D(10000), legs=[leg(1, 1, 50000, "40221.22")], contract_id=1) is None
    assert cross_below(client_id=7, cash=D(10000), legs=[at], contract_id=2) is None  # no leg there


def test_an_account_past_its_margin_call_is_reached_but_not_below():
    # At 44,000: equity 10,000 - 6,000 = 4,000; requirement 0.0055 x 44,000 = 242 < 80% of 4,000: nothing.
    # At 40,300: equity 300, requirement 221.65 >= 0.8 x 300 = 240? no: 221.65 < 240. At 40,270: equity 270,
    # requirement 221.485 >= 216: called, not below (270 > 221.485).
    assert cross_below(client_id=7, cash=D(10000), legs=[leg(1, 1, 50000, 44000)], contract_id=1,
                       call_ratio=D("0.8")) is None
    assert cross_below(client_id=7, cash=D(10000), legs=[leg(1, 1, 50000, 40300)], contract_id=1,
                       call_ratio=D("0.8")) is None
    called = cross_below(client_id=7, cash=D(10000), legs=[leg(1, 1, 50000, 40270)], contract_id=1,
                         call_ratio=D("0.8"))
    assert called is not None and not called.below and called.account_equity == D(270)
    assert cross_below(client_id=7, cash=D(10000), legs=[leg(1, 1, 50000, 40270)], contract_id=1) is None


def test_the_cash_outside_isolated_margins_and_lockups_comes_from_the_fund_lock():
    # fundlock 1,000 + settle -30 - lockups 100 - margin value 700 (isolated holds 400, the cross leg 300) = 170;
    # plus the cross leg's holding 300: 470.
    cross_leg = leg(1, "0.1", 50000, 49000, settle=50300, margin=D(270))  # held 270 - (5,000 - 5,030) = 300
    assert cross_leg.held == D(300)
    assert cross_cash(fundlock=D(1000), settle_value=D(-30), lockup_value=D(100), margin_value=D(700),
                      legs=[cross_leg]) == D(470)


@pytest.mark.django_db
def test_the_selector_finds_a_cross_account_only_once_its_mark_reaches_the_liquidation_price(perp, now,  # noqa: F811
                                                                                            time_machine):
    time_machine.move_to(now)
    alice, bob = trader(perp, "1000"), trader(perp, "100000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="cross")
    match(perp)  # Alice: 0.1 long at 50,000, cross, 1,000 deposited: m = 1,000 -> (5,000 - 1,000) / 0.0993 = 40,281.97
    assert balance(alice, perp) == (D(500), D(500))

    def below(price, at):
        quote(perp.pair, "binance", price, at)
        perpetual_marks_update(now=at)
        return cross_accounts_below(contract_id=perp.pk, currency_id=perp.collateral_id, fresh_since=at)

    assert below("40500", now) == []
    later = now + timedelta(seconds=1)
    time_machine.move_to(later)
    [found] = below("40000", later)  # Bob's short is far from it
    # equity 1,000 + 0.1 x (40,000 - 50,000) = 0; requirement (0.005 + 0.002) x 0.1 x 40,000 = 28
    assert (found.client_id, found.quantity, found.margin, found.equity, found.requirement) == (
        alice.pk, D("0.1"), D(1000), D(0), D(28))
    # a mark older than asked is stale: nothing liquidates on it
    assert cross_accounts_below(contract_id=perp.pk, currency_id=perp.collateral_id,
                                fresh_since=later + timedelta(seconds=1)) == []
    assert cross_accounts_below(contract_id=perp.pk, currency_id=perp.collateral_id, fresh_since=later,
                                exclude=[alice.pk]) == []


def cross_loss_of_200(contract, alice, bob, now, bob_sells="0.1"):
    """Alice buys 0.1 cross at 50,000 with 10x from Bob; the mark falls to 48,000: she has lost 200 at the mark,
    no cash has moved yet."""
    send(bob, contract, "sell", "50000", bob_sells, leverage=D(5), margin_mode="cross")
    send(alice, contract, "buy", "50000", "0.1", leverage=D(10), margin_mode="cross")
    match(contract)
    quote(contract.pair, "binance", "48000", now)
    perpetual_marks_update(now=now)


@pytest.mark.django_db
def test_a_cross_loss_at_the_mark_not_yet_settled_cannot_be_withdrawn(perp, now, time_machine):  # noqa: F811
    time_machine.move_to(now)
    alice, bob = trader(perp, "1000"), trader(perp, "100000")
    cross_loss_of_200(perp, alice, bob, now)
    assert balance(alice, perp) == (D(500), D(500))
    currency = perp.collateral
    currency.token_address = "0x" + "7" * 40  # held on chain
    currency.save(update_fields=["token_address"])
    with pytest.raises(ApplicationError) as refused:
        withdrawal_request(client=alice, ask=WithdrawalAsk("w1", currency, D("300.01")), now=now)
    assert (refused.value.code, refused.value.extra) == ("insufficient_collateral", {"available": "300"})
    withdrawal, created = withdrawal_request(client=alice, ask=WithdrawalAsk("w2", currency, D(300)), now=now)
    assert created and balance(alice, perp) == (D(500), D(200))
    # Bob's gain is not withdrawable before it is settled, and not taken from him either
    assert cross_unrealised_loss(client_id=bob.pk, currency_id=currency.pk) == 0


@pytest.mark.django_db
def test_a_cross_loss_at_the_mark_does_not_back_new_orders(perp, now, time_machine):  # noqa: F811
    time_machine.move_to(now)
    alice, bob = trader(perp, "1000"), trader(perp, "100000")
    cross_loss_of_200(perp, alice, bob, now, bob_sells="0.2")  # 500 available, 300 of it free
    too_much = send(alice, perp, "buy", "40000", "0.038", leverage=D(5), margin_mode="cross")  # holds 304
    enough = send(alice, perp, "buy", "40000", "0.037", leverage=D(5), margin_mode="cross")  # holds 296
    closing = send(alice, perp, "sell", "60000", "0.1", reduce_only=True, leverage=D(1), margin_mode="cross")
    match(perp)
    assert state(too_much) == ("rejected", D(0), "insufficient_collateral")
    assert state(enough)[0] == "accepted" and state(closing)[0] == "accepted"


@pytest.mark.django_db
def test_a_cross_loss_at_the_mark_does_not_back_auction_orders(perp, now, time_machine):  # noqa: F811
    """The auction's validation counts it as the matcher does: an order holding more than the free collateral
    left after the loss is rejected; a call bought in the same currency holds its premium."""
    time_machine.move_to(now)
    alice, bob = trader(perp, "1000"), trader(perp, "100000")
    cross_loss_of_200(perp, alice, bob, now)  # 500 available, 300 of it free
    call = ContractFactory(pair=perp.pair)  # in auctions, the same collateral
    assert call.collateral_id == perp.collateral_id
    too_much = send(alice, call, "buy", "30400", "0.01")  # premium 304
    enough = send(alice, call, "buy", "29600", "0.01")  # premium 296
    for order in (too_much, enough):
        order_validate(order_id=order.pk, now=now)
    assert state(too_much) == ("rejected", D(0), "insufficient_collateral")
    assert state(enough)[0] == "accepted"


@pytest.mark.django_db
def test_an_auction_reserves_no_collateral_that_backs_a_cross_loss(perp, now, time_machine):  # noqa: F811
    """Alice, long the 110,000 call, sells the 100,000 call (a spread: it holds 6,000 of its 46,000 stand-alone
    worst case); she also lost 200 at the mark on a cross perpetual. The auction reserves her free collateral up
    to the other 40,000, less the loss: 1,000 free - 200 = 800, and she is bound."""
    time_machine.move_to(now)
    alice, bob = trader(perp, "1000000"), trader(perp, "1000000")
    c100, c110 = ContractFactory(pair=perp.pair), ContractFactory(pair=perp.pair, strike_px=D("110000"))
    position_open(alice, c110, "1", "1000", now)
    cross_loss_of_200(perp, alice, bob, now)
    assert cross_unrealised_loss(client_id=alice.pk, currency_id=perp.collateral_id) == D(200)
    place(alice, c100, "sell", "4000", "1", now)
    available_set(alice, perp.collateral, "1000")
    auction = auction_run(perp.pair, now + timedelta(seconds=10), apply=False)
    reservation = AuctionReservation.objects.get(auction=auction, client=alice)
    assert (reservation.amount, reservation.held, reservation.bound) == (D(800), D(6000), True)
