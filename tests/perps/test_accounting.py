"""A perpetual position's fills, variation settlements and funding, against hand-worked numbers
(``ccp.perps.accounting``): cash relative to the reference price, what the position holds, what the client
gets back."""

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from ccp.perps.accounting import CROSS, ISOLATED, PerpPosition, fill_book, funding_book, variation_book


def available_change(booked):
    return booked.cash - booked.held_change


def test_open_reduce_settle_flip():
    flat = PerpPosition(mode=ISOLATED)
    # Long 1 at 50,000 at 10x while R is 49,000: pays 1,000 now, holds 4,000 more: available falls by 5,000.
    opened = fill_book(flat, quantity=D(1), price=D(50000), leverage=D(10), settle_px=D(49000))
    assert (opened.cash, opened.held_change, available_change(opened)) == (D(-1000), D(4000), D(-5000))
    assert (opened.position.quantity, opened.position.entry_px, opened.position.margin) == (D(1), D(50000), D(5000))
    assert opened.position.cost == D(50000)

    # Sell 0.4 at 51,000: 400 realised and 2,000 of margin back.
    reduced = fill_book(opened.position, quantity=D("-0.4"), price=D(51000), leverage=D(10), settle_px=D(49000))
    assert (reduced.cash, reduced.held_change, available_change(reduced)) == (D(800), D(-1600), D(2400))
    assert (reduced.position.quantity, reduced.position.margin, reduced.position.realised_pnl) == (
        D("0.6"), D(3000), D(400))

    # Settled to 52,000: cash and held both up by 0.6 x 3,000; available unchanged.
    settled = variation_book(reduced.position, settle_px=D(49000), mark=D(52000))
    assert (settled.cash, settled.held_change, available_change(settled)) == (D(1800), D(1800), D(0))

    # Sell 1.6 at 52,000 at 5x: closes 0.6 (1,200 more realised, 3,000 back) and opens 1 short with 10,400.
    flipped = fill_book(settled.position, quantity=D("-1.6"), price=D(52000), leverage=D(5), settle_px=D(52000))
    assert (flipped.cash, available_change(flipped)) == (D(0), D(3000) + D(1200) - D(10400))
    assert (flipped.position.quantity, flipped.position.entry_px, flipped.position.margin,
            flipped.position.realised_pnl) == (D(-1), D(52000), D(10400), D(1600))


def test_funding_goes_into_an_isolated_margin_and_out_of_cross_available():
    position = PerpPosition(quantity=D(2), cost=D(200), margin=D(20), mode=ISOLATED)
    paid = funding_book(position, payment=D("-0.6"))
    assert (paid.position.margin, available_change(paid)) == (D("19.4"), D(0))
    cross = funding_book(PerpPosition(quantity=D(2), cost=D(200), margin=D(20), mode=CROSS), payment=D("-0.6"))
    assert (cross.position.margin, available_change(cross)) == (D(20), D("-0.6"))


def test_the_two_sides_of_a_trade_pay_each_other():
    buyer = fill_book(PerpPosition(), quantity=D("0.3"), price=D(101), leverage=D(3), settle_px=D(97))
    seller = fill_book(PerpPosition(mode=ISOLATED), quantity=D("-0.3"), price=D(101), leverage=D(20),
                       settle_px=D(97))
    assert buyer.cash + seller.cash == 0


steps = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.integers(-30, 30).filter(bool), st.integers(90, 110), st.integers(1, 50)),
    st.tuples(st.just("settle"), st.integers(90, 110)),
    st.tuples(st.just("fund"), st.integers(-50, 50)),
), max_size=40)


@given(steps=steps, mode=st.sampled_from([CROSS, ISOLATED]))
def test_realised_pnl_less_cost_is_the_cash_and_flat_holds_nothing(steps, mode):
    position, settle, cash, funding, available = PerpPosition(mode=mode), D(100), D(0), D(0), D(0)
    for step in steps:
        if step[0] == "fill":
            booked = fill_book(position, quantity=D(step[1]) / 10, price=D(step[2]), leverage=D(step[3]),
                               settle_px=settle)
        elif step[0] == "settle":
            booked = variation_book(position, settle_px=settle, mark=D(step[1]))
            settle = D(step[1])
        else:
            booked = funding_book(position, payment=D(step[1]) / 100)
            funding += booked.cash
        position, cash, available = booked.position, cash + booked.cash, available + available_change(booked)
        assert position.realised_pnl - position.settled_cost(settle) == cash - funding
        assert position.margin >= 0 or mode == ISOLATED  # only funding can take an isolated margin below
    if not position.quantity:
        assert position.held(settle) == (position.margin if mode == ISOLATED else 0)
        if mode == CROSS:
            assert available == position.realised_pnl + funding  # every margin back, PnL and funding in


def test_a_liquidation_fill_keeps_the_margin_in_the_position():
    # Long 0.1 at 50,000 with 500 of margin, 0.046 closed at 45,400 by its liquidation: the 211.6 realised loss
    # comes out of the margin (500 -> 288.4), nothing is released, available does not move.
    position = PerpPosition(quantity=D("0.1"), cost=D(5000), margin=D(500), mode=ISOLATED)
    closed = fill_book(position, quantity=D("-0.046"), price=D(45400), leverage=D(1), settle_px=D(50000),
                       keep_margin=True)
    assert (closed.position.quantity, closed.position.margin, closed.position.realised_pnl) == (
        D("0.054"), D("288.4"), D("-211.6"))
    assert available_change(closed) == 0
    rest = fill_book(closed.position, quantity=D("-0.054"), price=D(45400), leverage=D(1), settle_px=D(50000),
                     keep_margin=True)
    assert (rest.position.quantity, rest.position.margin) == (D(0), D(0))  # flat: what is left comes back
    assert available_change(rest) == D("288.4") - D("0.054") * D(4600)
