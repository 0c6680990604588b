"""Payoffs, worst cases and collateral lockups of fully collateralised dated contracts.

Every contract has bounds ``[floor, cap]`` and settles on ``S' = clamp(S, floor, cap)``:
a call pays ``max(S' - K, 0)``, a put ``max(K - S', 0)`` and a future ``S' - floor``.
A fully collateralised future is a call struck at its floor: the buyer pays
``trade_px - floor`` at trade and receives ``S' - floor`` at expiry (net ``S' - trade_px``),
so a buyer's worst case is ``trade_px - floor`` and a seller's is ``cap - trade_px``.

Kink-point argument: a portfolio payoff ``sum(qty_i * payoff_i(S))`` is piecewise linear in
``S`` with kinks only at the strikes, floors and caps of its legs, and constant below the
lowest floor and above the highest cap. A piecewise-linear function attains its minimum at
a kink, so the worst case over all ``S >= 0`` is the minimum over those finitely many points.

All arithmetic is exact ``Decimal``: any rounding raises ``decimal.Inexact`` instead of
silently losing money.
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

__all__ = [
    "ContractKind",
    "Terms",
    "Leg",
    "settlement_px_clamp",
    "payoff_per_unit",
    "max_payoff_per_unit",
    "premium_per_unit",
    "price_bounds",
    "kink_points",
    "portfolio_payoff",
    "portfolio_worst_case",
    "lockup_amount",
    "lockup_amounts",
    "order_worst_cost",
]

_ZERO = Decimal(0)
K = TypeVar("K")
# 60 significant digits hold sums of 18-decimal amounts of any realistic size exactly.
_EXACT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


def _exact() -> AbstractContextManager[decimal.Context]:
    """Context in which any rounding raises, so every result is exact."""
    return decimal.localcontext(_EXACT)


def _require_decimal(name: str, value: object) -> Decimal:
    # float/int silently carry binary or unit errors into money; insist on Decimal.
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}: {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class ContractKind(enum.StrEnum):
    CALL = "call"
    PUT = "put"
    FUTURE = "future"
    # No expiry and no payoff: margined (``ccp.perps.margin``), never locked up; [floor, cap] is its price band.
    PERPETUAL = "perpetual"


@dataclass(frozen=True)
class Terms:
    """Contract terms: kind, settlement bounds [floor, cap] and (options only) strike."""

    kind: ContractKind
    floor: Decimal
    cap: Decimal
    strike: Decimal | None = None

    def __post_init__(self) -> None:
        # Accept the plain string value too ("call"), but store the enum.
        object.__setattr__(self, "kind", ContractKind(self.kind))
        _require_decimal("floor", self.floor)
        _require_decimal("cap", self.cap)
        if self.floor < 0:
            raise ValueError(f"floor must be >= 0, got {self.floor}")
        if self.cap <= self.floor:
            raise ValueError(f"cap must be > floor, got floor={self.floor} cap={self.cap}")
        if self.kind in (ContractKind.FUTURE, ContractKind.PERPETUAL):
            if self.strike is not None:
                raise ValueError(f"a {self.kind.value} has no strike, got strike={self.strike}")
            return
        if self.strike is None:
            raise ValueError(f"a {self.kind.value} requires a strike")
        _require_decimal("strike", self.strike)
        if not self.floor <= self.strike <= self.cap:
            raise ValueError(
                f"strike {self.strike} must lie within [floor, cap] = [{self.floor}, {self.cap}]"
            )


@dataclass(frozen=True)
class Leg:
    """A signed position: qty > 0 is long, qty < 0 is short."""

    terms: Terms
    qty: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.terms, Terms):
            raise TypeError(f"terms must be Terms, got {type(self.terms).__name__}")
        _require_decimal("qty", self.qty)


def settlement_px_clamp(terms: Terms, spot_px: Decimal) -> Decimal:
    """The settlement price S' = S clamped to the contract's own [floor, cap]."""
    _require_decimal("spot_px", spot_px)
    return min(max(spot_px, terms.floor), terms.cap)


def _dated(terms: Terms) -> Terms:
    if terms.kind is ContractKind.PERPETUAL:
        raise ValueError("a perpetual has no payoff at expiry: it is margined (ccp.perps.margin)")
    return terms


def payoff_per_unit(terms: Terms, spot_px: Decimal) -> Decimal:
    """Payoff of one long unit at spot ``spot_px`` (clamped first)."""
    s = settlement_px_clamp(_dated(terms), spot_px)
    with _exact():
        if terms.kind is ContractKind.CALL:
            return max(s - terms.strike, _ZERO)  # type: ignore[operator]
        if terms.kind is ContractKind.PUT:
            return max(terms.strike - s, _ZERO)  # type: ignore[operator]
        return s - terms.floor  # future = call struck at floor


def max_payoff_per_unit(terms: Terms) -> Decimal:
    """Largest payoff of one long unit, i.e. the collateral fully backing it."""
    _dated(terms)
    with _exact():
        if terms.kind is ContractKind.CALL:
            return terms.cap - terms.strike  # type: ignore[operator]
        if terms.kind is ContractKind.PUT:
            return terms.strike - terms.floor  # type: ignore[operator]
        return terms.cap - terms.floor


def mark_px(terms: Terms, index_px: Decimal) -> Decimal:
    """A contract's mark price at the underlying's index, on the scale its orders are priced in.

    A future is quoted as the underlying's price: its mark is the index clamped to [floor, cap]. An
    option's mark is its intrinsic value at the index (what it would pay if it expired now): there
    is no volatility model yet, so this is a lower bound of what an option is worth before expiry."""
    if terms.kind in (ContractKind.FUTURE, ContractKind.PERPETUAL):
        return settlement_px_clamp(terms, index_px)
    return payoff_per_unit(terms, index_px)


def premium_per_unit(terms: Terms, trade_px: Decimal) -> Decimal:
    """Cash a buyer pays per unit at trade (a future's price is quoted, but floor is prepaid). A perpetual's
    is its price: the notional a position's cost counts (its cash moves relative to a reference price
    instead, ``ccp.perps.accounting``)."""
    _require_decimal("trade_px", trade_px)
    with _exact():
        return trade_px - terms.floor if terms.kind is ContractKind.FUTURE else trade_px


def price_bounds(terms: Terms) -> tuple[Decimal, Decimal]:
    """Valid trade prices: an option's premium in [0, max payoff]; a future's or a perpetual's price in
    [floor, cap]."""
    if terms.kind in (ContractKind.FUTURE, ContractKind.PERPETUAL):
        return terms.floor, terms.cap
    return _ZERO, max_payoff_per_unit(terms)


def kink_points(legs: Iterable[Leg]) -> list[Decimal]:
    """Sorted unique strikes, floors and caps: the only places the portfolio payoff bends."""
    points: set[Decimal] = set()
    for leg in legs:
        points.update((leg.terms.floor, leg.terms.cap))
        if leg.terms.strike is not None:
            points.add(leg.terms.strike)
    return sorted(points)


def portfolio_payoff(legs: Iterable[Leg], spot_px: Decimal) -> Decimal:
    """Sum of qty * per-unit payoff over all legs at ``spot_px``."""
    with _exact():
        # Starting from +0 also turns a "-0" from short legs into a plain 0.
        return sum((leg.qty * payoff_per_unit(leg.terms, spot_px) for leg in legs), _ZERO)


def portfolio_worst_case(legs: Iterable[Leg]) -> Decimal:
    """Minimum portfolio payoff over all S >= 0, attained at a kink point (0 with no legs)."""
    legs = list(legs)  # iterated once per kink point
    return min((portfolio_payoff(legs, s) for s in kink_points(legs)), default=_ZERO)


def lockup_amount(legs: Iterable[Leg]) -> Decimal:
    """Collateral to lock so the portfolio can always pay: max(0, -worst case)."""
    with _exact():
        return max(_ZERO, -portfolio_worst_case(legs))


def lockup_amounts(portfolios: Mapping[K, Iterable[Leg]]) -> dict[K, Decimal]:
    """``lockup_amount`` of many portfolios at once. Each per-unit payoff at a kink point is computed
    once for all of them: an auction books thousands of portfolios over a few dozen contracts. A leg
    finds its contract's payoffs by its terms once, not once per kink point (hashing the terms cost more
    than the sums)."""
    units: dict[Terms, dict[Decimal, Decimal]] = {}  # terms -> kink point -> payoff of one long unit
    amounts: dict[K, Decimal] = {}
    with _exact():
        for key, legs in portfolios.items():
            legs = list(legs)
            rows = []
            for leg in legs:
                if (payoffs := units.get(leg.terms)) is None:
                    payoffs = units[leg.terms] = {}
                rows.append((leg.qty, payoffs, leg.terms))
            worst = None
            for point in kink_points(legs):
                total = _ZERO  # as ``portfolio_payoff``'s sum, term by term in leg order
                for qty, payoffs, terms in rows:
                    if (unit := payoffs.get(point)) is None:
                        unit = payoffs[point] = payoff_per_unit(terms, point)
                    total += qty * unit
                if worst is None or total < worst:  # the first of equal minima, as ``min``
                    worst = total
            amounts[key] = max(_ZERO, -(_ZERO if worst is None else worst))
    return amounts


def order_worst_cost(terms: Terms, side: str, px: Decimal, qty: Decimal) -> Decimal:
    """Most an order of ``qty`` units at ``px`` can cost its submitter.

    buy: the premium paid; sell: max payoff owed minus premium received.
    """
    _require_decimal("px", px)
    _require_decimal("qty", qty)
    if qty <= 0:
        raise ValueError(f"order qty must be > 0, got {qty}")
    lo, hi = price_bounds(terms)
    if not lo <= px <= hi:  # outside these bounds one side's "worst cost" would be negative
        raise ValueError(f"price {px} outside valid bounds [{lo}, {hi}]")
    premium = premium_per_unit(terms, px)
    with _exact():
        if side == "buy":
            return premium * qty
        if side == "sell":
            return (max_payoff_per_unit(terms) - premium) * qty
    raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
