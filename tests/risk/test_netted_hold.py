"""The netted hold of an auction order (ccp.orders.rules.order_value_netted), worked by hand on a call
and a future of bounds [50, 150]. Pure: no database."""

import random
from decimal import Decimal as D

import pytest

from ccp.contracts.payoffs import Leg, Terms, lockup_amount, premium_per_unit
from ccp.orders.rules import order_value, order_value_netted

C100 = Terms("call", D(50), D(150), D(100))
C110 = Terms("call", D(50), D(150), D(110))
P100 = Terms("put", D(50), D(150), D(100))
FUT = Terms("future", D(50), D(150))


@pytest.mark.parametrize(("terms", "side", "price", "quantity"), [
    (C100, "buy", "7", "2"), (C100, "sell", "7", "2"), (P100, "sell", "30", "1"), (FUT, "buy", "120", "1"),
    (FUT, "sell", "120", "3")])
def test_with_no_position_the_hold_is_the_stand_alone_worst_case(terms, side, price, quantity):
    assert order_value_netted(terms, side, D(price), D(quantity), []) == order_value(terms, side, D(price),
                                                                                      D(quantity))


@pytest.mark.parametrize(("positions", "terms", "side", "price", "quantity", "hold", "standalone"), [
    # call spread, long the 110 call, selling the 100 call at 4: the spread loses at most 10 (S >= 110);
    # the premium received covers 4 of it
    ([Leg(C110, D(1))], C100, "sell", "4", "1", "6", "46"),
    # call spread the other way, long the 100 call, selling the 110 call at 3: it can never lose
    ([Leg(C100, D(1))], C110, "sell", "3", "1", "0", "37"),
    # covered call: long a future (pays S - 50), selling a call at 5: covered, nothing held
    ([Leg(FUT, D(1))], C100, "sell", "5", "1", "0", "45"),
    # three calls sold against one future: at S = 150 the future pays 100, the calls cost 150: 50 - 15
    ([Leg(FUT, D(1))], C100, "sell", "5", "3", "35", "135"),
    # closing a short call (lockup 50) by buying it at 30: frees more than its premium
    ([Leg(C100, D(-1))], C100, "buy", "30", "1", "0", "30"),
    # buying two against one short: the premium 60 less the 50 freed
    ([Leg(C100, D(-1))], C100, "buy", "30", "2", "10", "60"),
    # closing a long future by selling it: nothing
    ([Leg(FUT, D(2))], FUT, "sell", "60", "2", "0", "180"),
    # a put bought against a short future (lockup 100 at S = 150... and the put pays below 100): the
    # portfolio's worst case stays at S = 150, so the put adds only its premium
    ([Leg(FUT, D(-1))], P100, "buy", "8", "1", "8", "8"),
])
def test_netted_holds_worked_by_hand(positions, terms, side, price, quantity, hold, standalone):
    assert order_value_netted(terms, side, D(price), D(quantity), positions) == D(hold)
    assert order_value(terms, side, D(price), D(quantity)) == D(standalone)


def test_the_hold_is_rounded_up_to_storage_precision():
    # a long call (lockup 0) and a sell of 21 decimal places of the 110 call at 0: the spread can lose 10
    # per unit, 3.33333333333333333333 here, held as ...334 at the 18th place
    quantity = D("0.333333333333333333333")
    assert order_value_netted(C100, "sell", D(0), quantity, [Leg(C110, D(1))]) == D("3.333333333333333334")


def test_never_more_than_stand_alone_and_a_partial_fill_never_needs_more():
    """Random portfolios: the hold is at most the stand-alone worst case, and what any partial fill of
    the order adds (lockup change plus premium) is at most the hold (convexity)."""
    rng = random.Random(14)
    contracts = [C100, C110, P100, FUT]
    for _ in range(300):
        positions = [Leg(rng.choice(contracts), D(rng.randint(-3, 3))) for _ in range(rng.randint(0, 3))]
        terms, side = rng.choice(contracts), rng.choice(["buy", "sell"])
        low, high = (D(51), D(149)) if terms.kind == "future" else (D(1), D(40))
        price, quantity = D(rng.randint(int(low), int(high))), D(rng.randint(1, 4))
        hold = order_value_netted(terms, side, price, quantity, positions)
        assert D(0) <= hold <= order_value(terms, side, price, quantity)
        for filled in range(1, int(quantity) + 1):
            signed = D(filled) if side == "buy" else -D(filled)
            need = (lockup_amount([*positions, Leg(terms, signed)]) - lockup_amount(positions)
                    + premium_per_unit(terms, price) * signed)
            assert need <= hold
