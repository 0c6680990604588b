"""What each collateral-bound client can still afford in an auction, exactly and incrementally. Pure.

A bound client's cost (``engine.client_cost``) is its premiums at the limit prices plus the lockup of
each portfolio: max(0, -(payoff at the worst kink point)). Evaluated at every kink point of every
contract of the portfolio (a superset of the legs' kinks gives the same minimum), the lockup is the
largest of a few linear functions of the fills, so the cost is convex in them: along any change of
fills, the changes a budget allows from a feasible state form an interval starting at 0. Hence:

- ``cap(order, +1)`` (``-1``): the most whole lots by which one order's fill can grow (shrink), in
  closed form: each kink point gives a row a x k <= b;
- ``largest(changes, most)``: the most t <= most such that applying every (order, lots per t) change
  at once fits; a bisection on exact checks (used when one client is on two sides of a change).

Clients whose collateral cannot bind fit any fills (their caps are the order's lots); clients under
water (budget below their current lockups) trade nothing. Arithmetic in integers (multiples of
10^-40 of the currency): sums, products and the closed form's floor division are exact.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ccp.contracts.payoffs import Leg, kink_points, payoff_per_unit, premium_per_unit

UNLIMITED = 1 << 62
# Amounts as whole multiples of 10^-SCALE: money has at most 18 decimals, a per-lot amount (price x lot
# size) at most 36, so integer arithmetic is exact (and a few times faster than Decimal's).
SCALE = 40
_EXACT = decimal.Context(prec=120, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


def _units(value: Decimal) -> int:
    scaled = _EXACT.scaleb(value, SCALE)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {SCALE} decimals")
    return int(scaled)


@dataclass
class _Client:
    budget: int
    premiums: int
    payoffs: dict[str, list[int]]  # portfolio -> payoff at each of its kink points (positions + fills)
    lockups: dict[str, int] = field(default_factory=dict)
    cost: int = 0  # premiums + lockups


class Headroom:
    """The collateral state of a set of fills. ``orders``: order id -> (client, contract symbol, side,
    limit price, lots); ``contracts``: symbol -> (terms, lot, portfolio); ``clients``: bound client id ->
    (budget, positions {symbol: quantity}); ``barred``: clients that may not trade at all."""

    def __init__(self, orders: Mapping, contracts: Mapping, clients: Mapping, barred: Iterable[str] = ()) -> None:
        self.orders = orders
        self.contracts = contracts
        self.barred = frozenset(barred)
        self._kinks: dict[str, list[Decimal]] = {}
        by_portfolio: dict[str, list] = {}
        for terms, _, portfolio in contracts.values():
            by_portfolio.setdefault(portfolio, []).append(terms)
        for portfolio, terms in by_portfolio.items():
            self._kinks[portfolio] = kink_points(Leg(t, Decimal(1)) for t in terms)
        self._unit_payoffs: dict[str, list[Decimal]] = {}
        self._units: dict[tuple[str, str, Decimal], tuple[int, list[int], str]] = {}
        self.clients: dict[str, _Client] = {}
        for client_id, (budget, positions) in clients.items():
            payoffs: dict[str, list[int]] = {}
            for symbol, qty in sorted(positions.items()):
                if not qty:
                    continue
                portfolio = contracts[symbol][2]
                row = payoffs.setdefault(portfolio, [0] * len(self._kinks[portfolio]))
                for j, unit in enumerate(self._unit_payoff(symbol)):
                    row[j] += _units(_EXACT.multiply(qty, unit))
            client = _Client(_units(budget), 0, payoffs)
            client.lockups = {p: max(0, -min(row)) for p, row in payoffs.items()}
            client.cost = sum(client.lockups.values())
            self.clients[client_id] = client

    def _unit_payoff(self, symbol: str) -> list[Decimal]:
        if (units := self._unit_payoffs.get(symbol)) is None:
            terms, _, portfolio = self.contracts[symbol]
            units = self._unit_payoffs[symbol] = [payoff_per_unit(terms, s) for s in self._kinks[portfolio]]
        return units

    def _unit(self, order: tuple) -> tuple[int, list[int], str]:
        """Per lot of this order filled: (premium paid, payoff at each kink point of its portfolio, the
        portfolio), in units of 10^-SCALE."""
        _, symbol, side, price, _ = order
        key = (symbol, side, price)
        if (unit := self._units.get(key)) is None:
            terms, lot, portfolio = self.contracts[symbol]
            sign = 1 if side == "buy" else -1
            unit = (sign * _units(_EXACT.multiply(premium_per_unit(terms, price), lot)),
                    [sign * _units(_EXACT.multiply(lot, u)) for u in self._unit_payoff(symbol)], portfolio)
            self._units[key] = unit
        return unit

    def bound(self, order_id: str) -> bool:
        return self.orders[order_id][0] in self.clients

    def add(self, order_id: str, lots: int) -> None:
        """Record ``lots`` more (fewer when negative) of the order filled."""
        order = self.orders[order_id]
        client = self.clients.get(order[0])
        if client is None or not lots:
            return
        premium, payoff, portfolio = self._unit(order)
        client.premiums += lots * premium
        row = client.payoffs.get(portfolio)
        if row is None:
            row = client.payoffs[portfolio] = [0] * len(payoff)
        for j, unit in enumerate(payoff):
            row[j] += lots * unit
        before = client.lockups.get(portfolio, 0)
        after = client.lockups[portfolio] = max(0, -min(row))
        client.cost += lots * premium + after - before

    def fits(self, client_id: str) -> bool:
        client = self.clients.get(client_id)
        return client is None or client.cost <= client.budget

    def cap(self, order_id: str, direction: int = 1) -> int:
        """The most whole lots by which this order's fill may grow (``direction`` 1) or shrink (-1)
        with its client's collateral still within budget; ``UNLIMITED`` for a client that cannot bind."""
        order = self.orders[order_id]
        client = self.clients.get(order[0])
        if client is None:
            return 0 if order[0] in self.barred else UNLIMITED
        premium, payoff, portfolio = self._unit(order)
        room = client.budget - client.cost + client.lockups.get(portfolio, 0)  # budget - everything else
        if room < 0:
            return 0
        # k lots: room - k*p >= 0 and, per kink j, room - k*p + held_j + k*u_j >= 0
        p = direction * premium
        most = room // p if p > 0 else UNLIMITED
        held = client.payoffs.get(portfolio)
        for j, unit in enumerate(payoff):
            b = room + (held[j] if held else 0)
            if b < 0:
                return 0  # not feasible now: nothing more
            a = p - direction * unit
            if a > 0 and b // a < most:
                most = b // a
        return most

    def largest(self, changes: list[tuple[str, int]], most: int) -> int:
        """The most t in [0, most] such that filling every (order, lots per t) change t times fits every
        client concerned (their costs are convex along the change and fit at 0: bisection)."""
        clients = {self.orders[order_id][0] for order_id, _ in changes}
        if clients & self.barred:
            return 0
        if not clients & set(self.clients):
            return most

        def fits(t: int) -> bool:
            for order_id, per in changes:
                self.add(order_id, per * t)
            ok = all(self.fits(c) for c in clients)
            for order_id, per in changes:
                self.add(order_id, -per * t)
            return ok

        if fits(most):
            return most
        low, high = 0, most  # fits(low), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            if fits(middle):
                low = middle
            else:
                high = middle
        return low

