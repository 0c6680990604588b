"""Partial liquidation, margin calls and the ADL ranking, against hand-worked numbers
(``ccp.perps.liquidation``)."""

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from ccp.perps.liquidation import Counterparty, adl_fills, adl_ranking, liquidation_size, margin_call

RATE, FEE, TARGET = D("0.005"), D("0.002"), D("1.5")


def size(quantity, equity, mark, lot=D("0.01")):
    return liquidation_size(quantity=D(quantity), equity=D(equity), mark=D(mark), rate=RATE, fee_rate=FEE, lot=lot,
                            target=TARGET)


def restored(quantity, equity, mark, taken):
    """After closing ``taken`` at the mark and paying the fee, the rest is back at TARGET x requirement."""
    left = abs(D(quantity)) - taken
    return D(equity) - FEE * taken * D(mark) >= TARGET * (RATE + FEE) * left * D(mark)


def test_a_partial_liquidation_takes_the_fewest_lots_that_restore_margin():
    # 1 BTC, equity 300 at 45,000 (requirement 0.007 x 45,000 = 315): (0.0105 x 45,000 - 300) / (45,000 x 0.0085)
    # = 172.5 / 382.5 = 0.45098... -> 0.46 lots.
    assert size("1", "300", "45000") == D("0.46")
    assert restored("1", "300", "45000", D("0.46")) and not restored("1", "300", "45000", D("0.45"))
    assert size("-2", "200", "45000") == D("1.95")  # (945 - 200) / 382.5 = 1.947...
    assert size("1", "90", "45000") == D("1")  # equity no more than the fee of closing it all: everything
    assert size("1", "500", "45000") == D("0")  # above the target already


def test_margin_call_at_eighty_percent():
    # requirement + fee 315 at 45,000: a call once equity <= 315 / 0.8 = 393.75
    assert margin_call(quantity=D(1), equity=D("393.75"), mark=D(45000), rate=RATE, fee_rate=FEE, call_ratio=D("0.8"))
    assert not margin_call(quantity=D(1), equity=D("393.76"), mark=D(45000), rate=RATE, fee_rate=FEE,
                           call_ratio=D("0.8"))


@given(lots=st.integers(1, 10_000), equity=st.integers(-1000, 100_000), mark=st.integers(1, 100_000))
def test_the_size_restores_margin_and_no_smaller_one_does(lots, equity, mark):
    quantity, lot = D(lots) / 100, D("0.01")
    taken = size(quantity, equity, mark, lot)
    assert 0 <= taken <= quantity and taken % lot == 0
    if taken < quantity:
        assert restored(quantity, equity, mark, taken)
    if 0 < taken:
        assert taken == quantity or not restored(quantity, equity, mark, taken - lot)


def test_adl_ranks_by_profit_ratio_times_leverage_and_fills_in_order():
    a = Counterparty(key=1, quantity=D(-2), unrealised_pnl=D(100), margin=D(1000), notional=D(10000))  # 0.1 x 10 = 1
    b = Counterparty(key=2, quantity=D(-1), unrealised_pnl=D(300), margin=D(1000), notional=D(5000))  # 0.3 x 5 = 1.5
    c = Counterparty(key=3, quantity=D(-5), unrealised_pnl=D(50), margin=D(500), notional=D(5000))  # 0.1 x 10 = 1
    losing = Counterparty(key=4, quantity=D(-9), unrealised_pnl=D(-5), margin=D(100), notional=D(900))
    ranked = adl_ranking([a, b, c, losing])
    assert [r.key for r in ranked] == [2, 3, 1]  # a tie of a and c: the larger first
    assert adl_fills(ranked, quantity=D(4)) == [(2, D(1)), (3, D(3))]
