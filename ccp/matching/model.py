"""The auction's optimisation model, built with Pyomo and solved by HiGHS (appsi, persistent).

Columns are fills in whole lots: one column per price level of orders whose clients' collateral
cannot bind (merged: their orders at one price share a column), one column per order of a
client whose collateral can bind. Rows:

- balance, per contract: bought lots = sold lots;
- lockup, per binding client, portfolio and kink point S:
  lockup >= -(payoff at S of current positions + fills);
- budget, per binding client: premiums at the limit price (paid for buys, received for sells)
  + the new lockups of its portfolios <= its budget.

Objective: traded surplus, sum of filled quantity x limit price, buys minus sells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs


@dataclass
class Column:
    contract: int  # index into the model's contracts
    side: int  # +1 buy, -1 sell
    price: Decimal
    lots: int  # upper bound
    lot: Decimal
    client: int | None = None  # binding client index, None for merged columns
    order_ids: list[str] = field(default_factory=list)


@dataclass
class BindingClient:
    budget: float
    # (portfolio key) -> list of (kink rhs constant, {column index: coefficient}) rows:
    # lockup[p] + sum(coef * x) >= rhs
    lockup_rows: dict[str, list[tuple[float, dict[int, float]]]]
    premium: dict[int, float]  # column -> premium per lot (signed: + paid, - received)


@dataclass
class Solved:
    lots: list[float] | None  # per column, None when no solution
    objective: float | None
    bound: float | None
    optimal: bool
    duals: list[float] | None = None  # per contract balance row (LP only)
    termination: str = ""


class AuctionModel:
    """One Pyomo model, solved first as an LP (bound, prices) then as a MIP on eligible columns."""

    def __init__(self, columns: list[Column], contracts: int, clients: list[BindingClient],
                 time_limit_s: float, mip_rel_gap: float) -> None:
        self.columns = columns
        m = self.m = pyo.ConcreteModel()
        n = len(columns)
        m.C = pyo.RangeSet(0, n - 1) if n else pyo.Set(initialize=[])
        m.x = pyo.Var(m.C, domain=pyo.NonNegativeReals, bounds=lambda _, i: (0, columns[i].lots))
        # Objective coefficients in currency: limit price x lot size.
        weight = [float(c.price * c.lot) * c.side for c in columns]
        m.welfare = pyo.Objective(expr=sum(weight[i] * m.x[i] for i in range(n)), sense=pyo.maximize)
        by_contract: list[list[int]] = [[] for _ in range(contracts)]
        for i, column in enumerate(columns):
            by_contract[column.contract].append(i)
        m.J = pyo.RangeSet(0, contracts - 1) if contracts else pyo.Set(initialize=[])
        m.balance = pyo.Constraint(
            m.J, rule=lambda _, j: sum(columns[i].side * m.x[i] for i in by_contract[j]) == 0
            if by_contract[j] else pyo.Constraint.Skip)
        keys = [(k, p) for k, client in enumerate(clients) for p in sorted(client.lockup_rows)]
        m.P = pyo.Set(initialize=keys, dimen=2)
        m.lockup = pyo.Var(m.P, domain=pyo.NonNegativeReals)
        rows = [(k, p, rhs, coefs) for k, client in enumerate(clients) for p in sorted(client.lockup_rows)
                for rhs, coefs in client.lockup_rows[p]]
        m.R = pyo.RangeSet(0, len(rows) - 1) if rows else pyo.Set(initialize=[])
        m.kink = pyo.Constraint(m.R, rule=lambda _, r: m.lockup[rows[r][0], rows[r][1]] + sum(
            coef * m.x[i] for i, coef in rows[r][3].items()) >= rows[r][2])
        m.K = pyo.RangeSet(0, len(clients) - 1) if clients else pyo.Set(initialize=[])
        m.budget = pyo.Constraint(m.K, rule=lambda _, k: sum(
            m.lockup[k, p] for p in sorted(clients[k].lockup_rows)) + sum(
            coef * m.x[i] for i, coef in clients[k].premium.items()) <= clients[k].budget)
        self.solver = Highs()
        self.solver.config.time_limit = time_limit_s
        self.solver.config.mip_gap = mip_rel_gap
        self.solver.config.load_solution = False
        # One thread and a fixed seed: the same input gives the same answer, bit for bit.
        self.solver.highs_options = {"threads": 1, "random_seed": 0, "mip_feasibility_tolerance": 1e-7}
        self.contracts = contracts

    def solve_relaxation(self) -> Solved:
        results = self.solver.solve(self.m)
        if results.termination_condition != TerminationCondition.optimal:
            return Solved(None, None, None, False, termination=str(results.termination_condition))
        results.solution_loader.load_vars()
        duals = results.solution_loader.get_duals()
        balance = [duals.get(self.m.balance[j], 0.0) if j in self.m.balance else 0.0 for j in range(self.contracts)]
        lots = [pyo.value(self.m.x[i]) for i in self.m.C]
        objective = results.best_feasible_objective
        return Solved(lots, objective, objective, True, duals=balance)

    def solve_integer(self, eligible: list[bool]) -> Solved:
        """Whole lots, only on eligible columns (the others stay at zero)."""
        for i in self.m.C:
            self.m.x[i].domain = pyo.NonNegativeIntegers
            if eligible[i]:
                self.m.x[i].unfix()
            else:
                self.m.x[i].fix(0)
        results = self.solver.solve(self.m)
        if results.best_feasible_objective is None:
            return Solved(None, None, results.best_objective_bound, False,
                          termination=str(results.termination_condition))
        results.solution_loader.load_vars()
        lots = [pyo.value(self.m.x[i]) for i in self.m.C]
        return Solved(lots, results.best_feasible_objective, results.best_objective_bound,
                      results.termination_condition == TerminationCondition.optimal,
                      termination=str(results.termination_condition))
