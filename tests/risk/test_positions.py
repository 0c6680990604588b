"""Entry price and realised PnL of a position (``ccp.risk.positions``): the worked cases, and the
identity realised + unrealised = cash + quantity x premium(mark) over any sequence of trades."""

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from ccp.contracts.payoffs import ContractKind, Terms, premium_per_unit
from ccp.risk.positions import FLAT, entry_price, position_move, position_trade, unrealised_pnl

FUTURE = Terms(kind=ContractKind.FUTURE, floor=D("50000"), cap=D("150000"))
CALL = Terms(kind=ContractKind.CALL, floor=D("50000"), cap=D("150000"), strike=D("100000"))


def test_a_long_built_in_two_fills_enters_at_their_average_and_realises_on_the_close():
    state = position_trade(FUTURE, FLAT, D("1"), D("100000"))
    assert (state.quantity, state.cost, entry_price(FUTURE, state)) == (D("1"), D("50000"), D("100000"))
    state = position_trade(FUTURE, state, D("3"), D("100400"))
    assert (state.quantity, entry_price(FUTURE, state), state.realised_pnl) == (D("4"), D("100300"), D("0"))
    state = position_trade(FUTURE, state, D("-1.5"), D("101300"))  # sell 1.5 at 1000 above entry
    assert (state.quantity, entry_price(FUTURE, state), state.realised_pnl) == (D("2.5"), D("100300"), D("1500"))
    assert unrealised_pnl(FUTURE, state, D("99300")) == D("-2500")


def test_a_fill_through_zero_closes_the_long_and_opens_a_short_at_its_price():
    state = position_trade(CALL, FLAT, D("2"), D("3000"))
    state = position_trade(CALL, state, D("-5"), D("3500"))
    assert (state.quantity, entry_price(CALL, state), state.realised_pnl) == (D("-3"), D("3500"), D("1000"))
    # buying the short back below its entry is a gain
    state = position_trade(CALL, state, D("3"), D("3100"))
    assert (state.quantity, state.cost, entry_price(CALL, state), state.realised_pnl) == (0, 0, None, D("2200"))


def test_expiry_closes_at_the_payoff():
    state = position_trade(CALL, FLAT, D("-2"), D("3000"))  # short 2 calls, received 6000
    # settled at 104000: the calls pay 4000 each, the short pays 8000
    state = position_move(state, D("2"), D("-8000"))
    assert (state.quantity, state.cost, state.realised_pnl) == (0, 0, D("-2000"))


def test_a_partial_close_releases_the_cost_rounded_and_the_identity_stays_exact():
    state = position_trade(FUTURE, FLAT, D("-1"), D("100500"))
    state = position_trade(FUTURE, state, D("-0.2"), D("99500"))  # entry 100333.33...
    assert entry_price(FUTURE, state) == D("100333.333333333333333333")
    state = position_trade(FUTURE, state, D("0.7"), D("100000"))
    cash = D("50500") + D("0.2") * D("49500") - D("0.7") * D("50000")
    assert state.realised_pnl - state.cost == cash


prices = st.integers(min_value=50000, max_value=150000).map(D)
quantities = st.integers(min_value=-500, max_value=500).filter(bool).map(lambda q: D(q) / 100)


@given(st.sampled_from([FUTURE, CALL]), st.lists(st.tuples(quantities, prices), min_size=1, max_size=30), prices)
def test_realised_plus_unrealised_is_cash_plus_the_position_at_mark(terms, trades, mark):
    state, cash = FLAT, D(0)
    for quantity, price in trades:
        if terms.kind is ContractKind.CALL:
            price = price - D("50000")  # a call's premium lies in [0, 100000]
        state = position_trade(terms, state, quantity, price)
        cash -= quantity * premium_per_unit(terms, price)
    assert state.quantity == sum(q for q, _ in trades)
    assert (entry_price(terms, state) is None) == (state.quantity == 0)
    assert state.quantity or not state.cost  # flat: no cost left
    assert state.realised_pnl - state.cost == cash
    value_at_mark = state.quantity * premium_per_unit(terms, mark)
    assert state.realised_pnl + unrealised_pnl(terms, state, mark) == cash + value_at_mark
    for amount in (state.cost, state.realised_pnl):
        assert amount == amount.quantize(D("1e-18"))  # storable exactly
