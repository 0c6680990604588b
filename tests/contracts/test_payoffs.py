"""Tests for ccp.contracts.payoffs: hand-computed cases plus brute-force properties."""

from __future__ import annotations

import decimal
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.contracts.payoffs import (
    ContractKind,
    Leg,
    Terms,
    kink_points,
    lockup_amount,
    lockup_amounts,
    max_payoff_per_unit,
    order_worst_cost,
    payoff_per_unit,
    portfolio_payoff,
    portfolio_worst_case,
    premium_per_unit,
    price_bounds,
    settlement_px_clamp,
)

CALL, PUT, FUTURE = ContractKind.CALL, ContractKind.PUT, ContractKind.FUTURE

# Shared bounds [50, 200] for most hand-computed cases.
C100 = Terms(CALL, D(50), D(200), D(100))
C120 = Terms(CALL, D(50), D(200), D(120))
C150 = Terms(CALL, D(50), D(200), D(150))
P100 = Terms(PUT, D(50), D(200), D(100))
FUT = Terms(FUTURE, D(50), D(200))


def leg(terms: Terms, qty: str | int) -> Leg:
    return Leg(terms, D(qty))


# --- single contracts: clamping and per-unit payoffs -------------------------------------


@pytest.mark.parametrize(
    ("spot", "expected"),
    [("10", "50"), ("50", "50"), ("120.5", "120.5"), ("200", "200"), ("999", "200")],
)
def test_settlement_px_clamp(spot: str, expected: str) -> None:
    assert settlement_px_clamp(C100, D(spot)) == D(expected)


@pytest.mark.parametrize(
    ("terms", "spot", "long_payoff"),
    [
        # call K=100 on [50, 200]: max(S' - 100, 0)
        (C100, "0", "0"),  # S' = 50 -> max(-50, 0) = 0
        (C100, "50", "0"),  # at floor
        (C100, "100", "0"),  # at strike
        (C100, "150", "50"),  # 150 - 100
        (C100, "200", "100"),  # at cap: 200 - 100
        (C100, "250", "100"),  # S' = 200 -> 100
        # put K=100 on [50, 200]: max(100 - S', 0)
        (P100, "10", "50"),  # S' = 50 -> 100 - 50
        (P100, "50", "50"),  # at floor
        (P100, "80", "20"),  # 100 - 80
        (P100, "100", "0"),  # at strike
        (P100, "150", "0"),
        (P100, "300", "0"),  # S' = 200 -> max(-100, 0)
        # future on [50, 200]: S' - 50
        (FUT, "10", "0"),  # S' = 50 -> 0
        (FUT, "50", "0"),  # at floor
        (FUT, "120", "70"),  # 120 - 50
        (FUT, "200", "150"),  # at cap: 200 - 50
        (FUT, "500", "150"),  # S' = 200 -> 150
    ],
)
def test_payoff_long_and_short(terms: Terms, spot: str, long_payoff: str) -> None:
    assert payoff_per_unit(terms, D(spot)) == D(long_payoff)
    assert portfolio_payoff([leg(terms, 1)], D(spot)) == D(long_payoff)
    assert portfolio_payoff([leg(terms, -1)], D(spot)) == -D(long_payoff)  # short = negated
    assert portfolio_payoff([leg(terms, 3)], D(spot)) == 3 * D(long_payoff)


def test_short_zero_payoff_is_plain_zero_not_negative_zero() -> None:
    # -1 * 0 is Decimal("-0") in raw Decimal arithmetic; it must not leak out.
    assert str(portfolio_payoff([leg(C100, -1)], D(50))) == "0"
    assert str(lockup_amount([leg(C100, 1)])) == "0"


def test_max_payoff_premium_and_price_bounds() -> None:
    assert max_payoff_per_unit(C100) == D(100)  # cap - K = 200 - 100
    assert max_payoff_per_unit(P100) == D(50)  # K - floor = 100 - 50
    assert max_payoff_per_unit(FUT) == D(150)  # cap - floor = 200 - 50
    assert premium_per_unit(C100, D("30.5")) == D("30.5")  # option: premium is the price
    assert premium_per_unit(FUT, D(120)) == D(70)  # future: 120 - floor 50
    assert price_bounds(C100) == (D(0), D(100))
    assert price_bounds(P100) == (D(0), D(50))
    assert price_bounds(FUT) == (D(50), D(200))


# --- portfolios: worst case and lockup --------------------------------------------------


def test_empty_portfolio() -> None:
    assert kink_points([]) == []
    assert portfolio_payoff([], D(123)) == 0
    assert portfolio_worst_case([]) == 0
    assert lockup_amount([]) == 0


def test_bull_call_spread_needs_no_lockup() -> None:
    legs = [leg(C100, 1), leg(C120, -1)]
    # S=50: 0 - 0 = 0; S=100: 0; S=120: 20 - 0 = 20; S=200: 100 - 80 = 20
    assert kink_points(legs) == [D(50), D(100), D(120), D(200)]
    assert [portfolio_payoff(legs, s) for s in kink_points(legs)] == [0, 0, 20, 20]
    assert portfolio_worst_case(legs) == 0
    assert lockup_amount(legs) == 0


def test_bear_call_spread_locks_the_width() -> None:
    legs = [leg(C100, -1), leg(C120, 1)]
    # S=200: -100 + 80 = -20 -> lockup 20 = strike width
    assert portfolio_worst_case(legs) == D(-20)
    assert lockup_amount(legs) == D(20)


def test_short_call_lockup() -> None:
    # worst at S=cap: -(200 - 100) * 3 = -300
    legs = [leg(C100, -3)]
    assert portfolio_worst_case(legs) == D(-300)
    assert lockup_amount(legs) == D(300)


def test_short_put_lockup() -> None:
    # worst at S=floor: -(100 - 50) * 2 = -100
    assert lockup_amount([leg(P100, -2)]) == D(100)


def test_short_straddle_lockup_is_less_than_sum_of_legs() -> None:
    legs = [leg(C100, -1), leg(P100, -1)]
    # S=50: 0 - 50 = -50; S=100: 0; S=200: -100 - 0 = -100
    assert portfolio_worst_case(legs) == D(-100)
    assert lockup_amount(legs) == D(100)  # not 100 + 50: both legs can't pay out at once
    assert lockup_amount(legs[:1]) + lockup_amount(legs[1:]) == D(150)


def test_covered_call() -> None:
    legs = [leg(FUT, 1), leg(C150, -1)]
    # S=50: 0 - 0 = 0; S=150: 100 - 0 = 100; S=200: 150 - 50 = 100
    assert [portfolio_payoff(legs, s) for s in kink_points(legs)] == [0, 100, 100]
    assert lockup_amount(legs) == 0
    assert lockup_amount(legs[1:]) == D(50)  # the naked call alone: 200 - 150


def test_short_future_lockup_is_cap_minus_floor() -> None:
    # S=200: -(200 - 50) = -150
    assert lockup_amount([leg(FUT, -1)]) == D(150)
    assert lockup_amount([leg(FUT, 1)]) == 0  # long future's payoff S' - floor >= 0


def test_legs_with_different_bounds() -> None:
    narrow = Terms(CALL, D(50), D(150), D(100))  # pays at most 50
    wide = Terms(CALL, D(0), D(300), D(100))  # pays up to 200
    legs = [leg(narrow, 1), leg(wide, -1)]
    assert kink_points(legs) == [D(0), D(50), D(100), D(150), D(300)]
    # S=200: narrow clamps to 150 -> 50; wide 200 - 100 = 100 -> 50 - 100 = -50
    assert portfolio_payoff(legs, D(200)) == D(-50)
    # S=300: 50 - 200 = -150 (the worst, at the wide leg's cap)
    assert portfolio_worst_case(legs) == D(-150)
    assert lockup_amount(legs) == D(150)


def test_kink_points_sorted_unique_across_scales() -> None:
    legs = [
        leg(C100, 1),
        Leg(Terms(PUT, D("0"), D("200.00"), D("100.0")), D(1)),  # 100.0 == 100, 200.00 == 200
        leg(Terms(FUTURE, D(50), D(150)), -1),
    ]
    assert kink_points(legs) == [0, 50, 100, 150, 200]


def test_fractional_quantities() -> None:
    # short 0.25 call: -(200 - 100) * 0.25 = -25
    assert lockup_amount([leg(C100, "0.25")]) == 0
    assert lockup_amount([leg(C100, "-0.25")]) == D(25)
    # 0.5 long put + 0.25 short future at S=80: 0.5*(100-80) - 0.25*(80-50) = 10 - 7.5 = 2.5
    legs = [leg(P100, "0.5"), leg(FUT, "-0.25")]
    assert portfolio_payoff(legs, D(80)) == D("2.5")
    # worst at S=200: 0 - 0.25 * 150 = -37.5
    assert lockup_amount(legs) == D("37.5")


def test_worst_case_accepts_a_one_shot_iterator() -> None:
    legs = [leg(C100, -1), leg(P100, -1)]
    assert portfolio_worst_case(iter(legs)) == D(-100)
    assert lockup_amount(x for x in legs) == D(100)


def test_arithmetic_is_exact_beyond_default_precision() -> None:
    terms = Terms(CALL, D(0), D("100000000.000000000000000003"), D("0.000000000000000001"))
    qty = D("-1234567.890123456789012345")
    # (cap - K) * |q| = 100000000.000000000000000002 * 1234567.890123456789012345
    #   = 123456789012345.6789012345 + 0.000000000000000002 * 1234567.890123456789012345
    #   = 123456789012345.6789012345 + 0.00000000000246913578024691357802469
    expected = D("123456789012345.678901234502469135780246913578024690")
    assert lockup_amount([Leg(terms, qty)]) == expected  # a 28-digit context would round this


def test_inexact_arithmetic_raises_instead_of_rounding() -> None:
    terms = Terms(CALL, D(0), D("1E+40"), D("1E-40"))  # cap - K needs 81 digits
    with pytest.raises(decimal.Inexact):
        max_payoff_per_unit(terms)


# --- order worst cost -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "side", "px", "qty", "expected"),
    [
        (C100, "buy", "30", "2", "60"),  # premium 30 * 2
        (C100, "sell", "30", "2", "140"),  # (max 100 - 30) * 2
        (P100, "buy", "10", "3", "30"),  # 10 * 3
        (P100, "sell", "10", "3", "120"),  # (max 50 - 10) * 3
        (FUT, "buy", "120", "2", "140"),  # (120 - floor 50) * 2
        (FUT, "sell", "120", "2", "160"),  # (150 - 70) * 2 = (cap 200 - 120) * 2
        (FUT, "buy", "120", "0.5", "35"),  # 70 * 0.5
        (C100, "sell", "0", "1", "100"),  # free call sold: owes up to the full 100
        (FUT, "sell", "200", "1", "0"),  # sold at cap: can never lose
    ],
)
def test_order_worst_cost(terms: Terms, side: str, px: str, qty: str, expected: str) -> None:
    assert order_worst_cost(terms, side, D(px), D(qty)) == D(expected)


@pytest.mark.parametrize(
    ("terms", "side", "px", "qty"),
    [
        (C100, "hold", "30", "1"),  # unknown side
        (C100, "buy", "30", "0"),  # qty must be > 0
        (C100, "sell", "30", "-1"),
        (C100, "buy", "101", "1"),  # premium above max payoff 100
        (C100, "buy", "-1", "1"),  # negative premium
        (FUT, "buy", "49", "1"),  # future price below floor
        (FUT, "sell", "201", "1"),  # future price above cap
    ],
)
def test_order_worst_cost_rejects_bad_orders(terms: Terms, side: str, px: str, qty: str) -> None:
    with pytest.raises(ValueError):
        order_worst_cost(terms, side, D(px), D(qty))


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "floor", "cap", "strike", "match"),
    [
        (CALL, D(-1), D(200), D(100), "floor"),  # negative floor
        (CALL, D(100), D(100), D(100), "cap"),  # cap == floor
        (FUTURE, D(200), D(100), None, "cap"),  # cap < floor
        (CALL, D(50), D(200), None, "strike"),  # call without strike
        (PUT, D(50), D(200), None, "strike"),  # put without strike
        (FUTURE, D(50), D(200), D(100), "strike"),  # future with strike
        (CALL, D(50), D(200), D(49), "strike"),  # strike below floor
        (PUT, D(50), D(200), D(201), "strike"),  # strike above cap
        (CALL, D(50), D("NaN"), D(100), "finite"),
        ("swap", D(50), D(200), D(100), "swap"),  # unknown kind
    ],
)
def test_invalid_terms_raise_value_error(
    kind: ContractKind | str, floor: D, cap: D, strike: D | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Terms(kind, floor, cap, strike)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("floor", "cap", "strike"),
    [(50.0, D(200), D(100)), (D(50), 200, D(100)), (D(50), D(200), 100.5)],
)
def test_non_decimal_money_fields_rejected(floor: object, cap: object, strike: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        Terms(CALL, floor, cap, strike)  # type: ignore[arg-type]


def test_valid_terms_edge_cases() -> None:
    assert Terms("call", D(0), D(1), D(0)).kind is CALL  # plain string kind; strike at floor
    assert Terms(PUT, D(0), D(1), D(1)).strike == 1  # strike at cap
    with pytest.raises(TypeError):
        Leg(C100, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        payoff_per_unit(C100, 150)  # type: ignore[arg-type]


# --- properties: brute force over the integer grid --------------------------------------


@st.composite
def terms_st(draw: st.DrawFn) -> Terms:
    floor = draw(st.integers(0, 199))
    cap = draw(st.integers(floor + 1, 200))
    kind = draw(st.sampled_from([CALL, PUT, FUTURE]))
    strike = None if kind is FUTURE else D(draw(st.integers(floor, cap)))
    return Terms(kind, D(floor), D(cap), strike)


qty_st = st.one_of(
    st.integers(-10, 10).map(D),
    st.integers(-1000, 1000).map(lambda n: D(n).scaleb(-2)),  # 2 decimals, e.g. -3.47
)
legs_st = st.lists(st.builds(Leg, terms_st(), qty_st), min_size=1, max_size=6)
# database=None: don't write a .hypothesis/ directory into the checkout.
PROPS = settings(max_examples=300, deadline=None, database=None)


def brute_min(legs: list[Leg]) -> D:
    """Minimum payoff over every integer S in [0, max cap + 5]; all kinks lie on this grid."""
    top = int(max(lg.terms.cap for lg in legs)) + 5
    return min(portfolio_payoff(legs, D(s)) for s in range(top + 1))


def reference_payoff(legs: list[Leg], spot: Fraction) -> Fraction:
    """Independent re-derivation of the payoff in exact rationals."""
    total = Fraction(0)
    for lg in legs:
        t = lg.terms
        s = min(max(spot, Fraction(t.floor)), Fraction(t.cap))
        if t.kind is CALL:
            unit = max(s - Fraction(t.strike), Fraction(0))
        elif t.kind is PUT:
            unit = max(Fraction(t.strike) - s, Fraction(0))
        else:
            unit = s - Fraction(t.floor)
        total += Fraction(lg.qty) * unit
    return total


@PROPS
@given(legs_st)
def test_worst_case_equals_brute_force_minimum(legs: list[Leg]) -> None:
    assert portfolio_worst_case(legs) == brute_min(legs)


@PROPS
@given(legs_st)
def test_lockup_is_non_negative_negated_brute_minimum(legs: list[Leg]) -> None:
    lockup = lockup_amount(legs)
    assert lockup >= 0
    assert lockup == max(D(0), -brute_min(legs))


@PROPS
@given(legs_st, legs_st, st.integers(-10, 2100).map(lambda n: D(n).scaleb(-1)))
def test_payoff_is_additive_and_matches_reference(
    legs_a: list[Leg], legs_b: list[Leg], spot: D
) -> None:
    whole = portfolio_payoff(legs_a + legs_b, spot)
    assert whole == portfolio_payoff(legs_a, spot) + portfolio_payoff(legs_b, spot)
    assert whole == sum(lg.qty * payoff_per_unit(lg.terms, spot) for lg in legs_a + legs_b)
    assert Fraction(whole) == reference_payoff(legs_a + legs_b, Fraction(spot))


@PROPS
@given(st.lists(legs_st, min_size=1, max_size=5))
def test_lockups_of_many_portfolios_equal_each_ones_lockup(portfolios: list[list[Leg]]) -> None:
    # Portfolios share contracts (the per-unit payoffs are computed once): same answers as one by one.
    shared = {n: legs + portfolios[0][:1] for n, legs in enumerate(portfolios)} | {"empty": []}
    assert lockup_amounts(shared) == {key: lockup_amount(legs) for key, legs in shared.items()}
