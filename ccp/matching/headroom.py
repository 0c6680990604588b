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
water (budget below their current lockups) trade nothing. Arithmetic in an exact Decimal context:
sums and products never round; the only division (the closed form) is checked back exactly.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from ccp.contracts.payoffs import Leg, kink_points, payoff_per_unit, premium_per_unit

_EXACT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN,
                         traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_DIVIDE = decimal.Context(prec=60, rounding=ROUND_FLOOR, traps=[decimal.InvalidOperation, decimal.DivisionByZero])
_ZERO = Decimal(0)
UNLIMITED = 1 << 62


@dataclass
class _Client:
    budget: Decimal
    premiums: Decimal
    payoffs: dict[str, list[Decimal]]  # portfolio -> payoff at each of its kink points (positions + fills)
    lockups: dict[str, Decimal] = field(default_factory=dict)

    def cost(self) -> Decimal:
        return self.premiums + sum(self.lockups.values(), _ZERO)


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
        self._units: dict[tuple[str, str, Decimal], tuple[Decimal, list[Decimal]]] = {}
        self.clients: dict[str, _Client] = {}
        with decimal.localcontext(_EXACT):
            for client_id, (budget, positions) in clients.items():
                payoffs: dict[str, list[Decimal]] = {}
                for symbol, qty in sorted(positions.items()):
                    if not qty:
                        continue
                    portfolio = contracts[symbol][2]
                    row = payoffs.setdefault(portfolio, [_ZERO] * len(self._kinks[portfolio]))
                    for j, unit in enumerate(self._unit_payoff(symbol)):
                        row[j] += qty * unit
                client = _Client(budget, _ZERO, payoffs)
                client.lockups = {p: max(_ZERO, -min(row)) for p, row in payoffs.items()}
                self.clients[client_id] = client

    def _unit_payoff(self, symbol: str) -> list[Decimal]:
        if (units := self._unit_payoffs.get(symbol)) is None:
            terms, _, portfolio = self.contracts[symbol]
            units = self._unit_payoffs[symbol] = [payoff_per_unit(terms, s) for s in self._kinks[portfolio]]
        return units

    def _unit(self, order_id: str) -> tuple[Decimal, list[Decimal]]:
        """Per lot of this order filled: (premium paid, payoff at each kink point of its portfolio)."""
        _, symbol, side, price, _ = self.orders[order_id]
        key = (symbol, side, price)
        if (unit := self._units.get(key)) is None:
            terms, lot, _ = self.contracts[symbol]
            sign = 1 if side == "buy" else -1
            with decimal.localcontext(_EXACT):
                unit = (sign * premium_per_unit(terms, price) * lot,
                        [sign * lot * u for u in self._unit_payoff(symbol)])
            self._units[key] = unit
        return unit

    def bound(self, order_id: str) -> bool:
        return self.orders[order_id][0] in self.clients

    def add(self, order_id: str, lots: int) -> None:
        """Record ``lots`` more (fewer when negative) of the order filled."""
        client = self.clients.get(self.orders[order_id][0])
        if client is None or not lots:
            return
        premium, payoff = self._unit(order_id)
        portfolio = self.contracts[self.orders[order_id][1]][2]
        with decimal.localcontext(_EXACT):
            client.premiums += lots * premium
            row = client.payoffs.setdefault(portfolio, [_ZERO] * len(payoff))
            for j, unit in enumerate(payoff):
                row[j] += lots * unit
            client.lockups[portfolio] = max(_ZERO, -min(row))

    def fits(self, client_id: str) -> bool:
        client = self.clients.get(client_id)
        return client is None or client.cost() <= client.budget

    def cap(self, order_id: str, direction: int = 1) -> int:
        """The most whole lots by which this order's fill may grow (``direction`` 1) or shrink (-1)
        with its client's collateral still within budget; ``UNLIMITED`` for a client that cannot bind."""
        client_id = self.orders[order_id][0]
        if client_id in self.barred:
            return 0
        client = self.clients.get(client_id)
        if client is None:
            return UNLIMITED
        premium, payoff = self._unit(order_id)
        portfolio = self.contracts[self.orders[order_id][1]][2]
        with decimal.localcontext(_EXACT):
            held = client.payoffs.get(portfolio) or [_ZERO] * len(payoff)
            room = client.budget - client.cost() + client.lockups.get(portfolio, _ZERO)  # budget - others
            # k lots: room - k*p >= 0 and, per kink j, room - k*p + held_j + k*u_j >= 0
            rows = [(direction * premium, room)] + [(direction * (premium - u), room + h)
                                                    for u, h in zip(payoff, held, strict=True)]
        most = UNLIMITED
        for a, b in rows:
            if b < 0:
                return 0  # not feasible now: nothing more
            if a > 0:
                k = int(_DIVIDE.divide(b, a).to_integral_value(ROUND_FLOOR))
                with decimal.localcontext(_EXACT):
                    while k > 0 and a * k > b:  # the division is rounded: check it back exactly
                        k -= 1
                most = min(most, k)
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

