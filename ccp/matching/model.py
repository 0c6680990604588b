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

import operator
from dataclasses import dataclass, field
from decimal import Decimal

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.common.numeric_types import native_numeric_types
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs
from pyomo.core.expr.numeric_expr import LinearExpression

from ccp.matching.auction import AuctionSettings


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


def _terms(expr) -> tuple[tuple, tuple, list[int], float] | None:
    """(coefficients, variables, their ids, constant) of a LinearExpression whose coefficients and constant
    are numbers and whose variables are not fixed; None for any other expression."""
    if type(expr) is not LinearExpression:
        return None
    coefs, variables, constant = expr.linear_coefs, expr.linear_vars, expr.constant
    if (type(constant) not in native_numeric_types or not native_numeric_types.issuperset(map(type, coefs))
            or any(map(_fixed, variables))):
        return None
    return coefs, variables, list(map(id, variables)), constant


_fixed = operator.attrgetter("fixed")


def _merged(coefs: tuple, ids: list[int]) -> dict[int, float]:
    """Variable id -> coefficient, duplicate terms summed, in order of first appearance (``generate_standard_
    repn``)."""
    merged = dict(zip(ids, coefs, strict=True))
    if len(merged) < len(ids):
        merged = {}
        for key, coef in zip(ids, coefs, strict=True):
            merged[key] = merged[key] + coef if key in merged else coef
    return merged


class _LinearHighs(Highs):
    """appsi's HiGHS interface, reading rows and an objective that are ``LinearExpression``s of numbers (all
    of this model's but the exact stage's) straight from their terms, and adding the columns they bring in
    one call.

    appsi walks each expression tree twice (to find its variables, then for its standard form) and adds
    each row's new columns to HiGHS by themselves: at 100,000 orders with 30% bound clients that was most of
    the LP stage. The model HiGHS receives is the same, entry for entry (columns in order of first
    appearance, rows in order, duplicate terms summed, zero coefficients left out, as ``generate_standard_
    repn`` does; tests/matching/test_model.py compares the two), so its answers are too. Anything else goes
    through appsi's own path. Written against Pyomo 6.10's appsi internals (requirements.txt pins it)."""

    def _new_columns(self, rows: list[tuple]) -> None:
        """Add the columns ``rows`` bring, in order of first appearance."""
        referenced, new = self._referenced_variables, {}
        for _, variables, ids, _ in rows:
            for key, v in zip(ids, variables, strict=True):
                if key not in referenced:
                    new.setdefault(key, v)
        self.add_variables(list(new.values()))

    def add_constraints(self, cons):
        rows = [_terms(con.body) for con in cons]
        if any(row is None for row in rows):
            return super().add_constraints(cons)
        for con in cons:
            if con in self._named_expressions:
                raise ValueError(f"constraint {con.name} has already been added")
        self._new_columns(rows)
        referenced = self._referenced_variables
        for con, (_, variables, ids, _) in zip(cons, rows, strict=True):
            self._active_constraints[con] = con.expr
            self._named_expressions[con] = []
            unique = dict(zip(ids, variables, strict=True))
            self._vars_referenced_by_con[con] = list(unique.values())
            for key in unique:
                referenced[key][0][con] = None
        self._add_rows(cons, rows)

    def _add_rows(self, cons, rows) -> None:
        """``Highs._add_constraints`` for rows of numbers: one ``addRows``."""
        self._sol = None
        if self._last_results_object is not None:
            self._last_results_object.solution_loader.invalidate()
        column = self._pyomo_var_to_solver_var_map
        count = len(self._pyomo_con_to_solver_con_map)
        lbs, ubs, starts, indices, values = [], [], [], [], []
        for con, (coefs, _, ids, constant) in zip(cons, rows, strict=True):
            starts.append(len(values))
            for key, coef in _merged(coefs, ids).items():
                if coef:
                    indices.append(column[key])
                    values.append(coef)
            lbs.append(pyo.value(con.lower) - constant if con.has_lb() else -highspy.kHighsInf)
            ubs.append(pyo.value(con.upper) - constant if con.has_ub() else highspy.kHighsInf)
            self._pyomo_con_to_solver_con_map[con] = count
            self._solver_con_to_pyomo_con_map[count] = con
            count += 1
        self._solver_model.addRows(len(lbs), np.array(lbs, dtype=np.double), np.array(ubs, dtype=np.double),
                                   len(values), np.array(starts), np.array(indices), np.array(values, dtype=np.double))

    def set_objective(self, obj):
        row = None if obj is None or self._objective is not None else _terms(obj.expr)
        if row is None:
            return super().set_objective(obj)
        _, variables, ids, constant = row
        self._objective, self._objective_expr, self._objective_sense = obj, obj.expr, obj.sense
        self._new_columns([row])
        self._obj_named_expressions = []
        unique = dict(zip(ids, variables, strict=True))
        self._vars_referenced_by_obj = list(unique.values())
        for key in unique:
            self._referenced_variables[key][2] = obj
        # ``Highs._set_objective`` for an objective of numbers.
        self._sol = None
        if self._last_results_object is not None:
            self._last_results_object.solution_loader.invalidate()
        self._objective_helpers = []
        n = len(self._pyomo_var_to_solver_var_map)
        costs = np.zeros(n, dtype=np.double)
        column = self._pyomo_var_to_solver_var_map
        for key, coef in _merged(row[0], ids).items():
            if coef:
                costs[column[key]] = coef
        self._solver_model.changeObjectiveOffset(constant)
        self._solver_model.changeObjectiveSense(
            highspy.ObjSense.kMaximize if obj.sense == pyo.maximize else highspy.ObjSense.kMinimize)
        self._solver_model.changeColsCost(n, np.arange(n), costs)


class AuctionModel:
    """One Pyomo model, solved first as an LP (bound, prices) then as a MIP on eligible columns."""

    def __init__(self, columns: list[Column], contracts: int, clients: list[BindingClient],
                 settings: AuctionSettings) -> None:
        self.columns = columns
        m = self.m = pyo.ConcreteModel()
        n = len(columns)
        m.C = pyo.RangeSet(0, n - 1) if n else pyo.Set(initialize=[])
        m.x = pyo.Var(m.C, domain=pyo.NonNegativeReals, bounds=lambda _, i: (0, columns[i].lots))
        x = list(m.x.values())  # m.x[i], looked up once
        # Objective coefficients in currency: limit price x lot size.
        weight = [float(c.price * c.lot) * c.side for c in columns]
        # Linear expressions built from their coefficients and variables: Pyomo then skips walking an
        # expression tree per row (most of the model's build and load time at 100,000 orders).
        m.welfare = pyo.Objective(expr=LinearExpression(constant=0.0, linear_coefs=weight,
                                                        linear_vars=x), sense=pyo.maximize)
        by_contract: list[list[int]] = [[] for _ in range(contracts)]
        for i, column in enumerate(columns):
            by_contract[column.contract].append(i)
        m.J = pyo.RangeSet(0, contracts - 1) if contracts else pyo.Set(initialize=[])
        m.balance = pyo.Constraint(
            m.J, rule=lambda _, j: LinearExpression(
                constant=0.0, linear_coefs=[float(columns[i].side) for i in by_contract[j]],
                linear_vars=[x[i] for i in by_contract[j]]) == 0 if by_contract[j] else pyo.Constraint.Skip)
        keys = [(k, p) for k, client in enumerate(clients) for p in sorted(client.lockup_rows)]
        m.P = pyo.Set(initialize=keys, dimen=2)
        m.lockup = pyo.Var(m.P, domain=pyo.NonNegativeReals)
        rows = [(k, p, rhs, coefs) for k, client in enumerate(clients) for p in sorted(client.lockup_rows)
                for rhs, coefs in client.lockup_rows[p]]
        m.R = pyo.RangeSet(0, len(rows) - 1) if rows else pyo.Set(initialize=[])
        m.kink = pyo.Constraint(m.R, rule=lambda _, r: LinearExpression(
            constant=0.0, linear_coefs=[1.0, *rows[r][3].values()],
            linear_vars=[m.lockup[rows[r][0], rows[r][1]], *map(x.__getitem__, rows[r][3])]) >= rows[r][2])
        m.K = pyo.RangeSet(0, len(clients) - 1) if clients else pyo.Set(initialize=[])
        m.budget = pyo.Constraint(m.K, rule=lambda _, k: LinearExpression(
            constant=0.0, linear_coefs=[1.0] * len(clients[k].lockup_rows) + list(clients[k].premium.values()),
            linear_vars=[m.lockup[k, p] for p in sorted(clients[k].lockup_rows)]
            + [x[i] for i in clients[k].premium]) <= clients[k].budget)
        self.solver = _LinearHighs()
        # Between solves only the columns' bounds and domains change, and the exact stage adds its rows by
        # hand (``solve_price_consistent``): appsi's other checks walk every row and the objective for nothing.
        update = self.solver.update_config
        update.check_for_new_or_removed_constraints = update.check_for_new_or_removed_vars = False
        update.check_for_new_or_removed_params = update.update_params = False
        update.check_for_new_objective = update.update_objective = False
        update.update_constraints = update.update_named_expressions = False
        self.solver.config.mip_gap = float(settings.mip_rel_gap)
        self.solver.config.load_solution = False
        # One thread, a fixed seed and limits in work (simplex iterations, branch-and-bound nodes), not
        # in time: the same input gives the same answer, bit for bit, on any machine under any load. The
        # caller's wall-clock guard (``time_left`` of each solve) is only a safety net; when it stops a
        # solve, the termination says so (maxTimeLimit). No probing in presolve (rule 15 of
        # presolve_rule_off): on these models it found next to nothing and took half of the exact stage
        # at 100,000 orders (bench/auction.py, BENCHMARKS.md).
        self.solver.highs_options = {"threads": 1, "random_seed": 0, "mip_feasibility_tolerance": 1e-7,
                                     "presolve_rule_off": 1 << 15,
                                     "simplex_iteration_limit": settings.simplex_iteration_limit,
                                     "mip_max_nodes": settings.mip_max_nodes}
        self.contracts = contracts
        self._x_columns: np.ndarray | None = None  # m.x's columns in HiGHS, in order (after the first solve)

    def _solve(self, time_left: float):
        """Solve; on 'infeasible', solve again without presolve. Every model here is feasible (no fill
        at all satisfies every row), and HiGHS 1.12-1.15 presolve was seen to call a small one
        infeasible (tests/matching/test_engine.py::test_highs_presolve_false_infeasible)."""
        self.solver.config.time_limit = max(time_left, 0.0)
        results = self.solver.solve(self.m)
        if results.termination_condition == TerminationCondition.infeasible:
            options = self.solver.highs_options
            self.solver.highs_options = {**options, "presolve": "off"}
            try:
                results = self.solver.solve(self.m)
            finally:
                self.solver.highs_options = {**options, "presolve": "on"}
        return results

    def _column_values(self) -> list[float]:
        """The last solution's value of each column, read from HiGHS (as appsi's ``load_vars`` would give
        them, without setting a hundred thousand Pyomo values)."""
        if self._x_columns is None:
            column = self.solver._pyomo_var_to_solver_var_map
            self._x_columns = np.array([column[id(x)] for x in self.m.x.values()], dtype=np.int64)
        return np.asarray(self.solver._sol.col_value)[self._x_columns].tolist()

    def solve_relaxation(self, time_left: float) -> Solved:
        results = self._solve(time_left)
        if results.termination_condition != TerminationCondition.optimal:
            return Solved(None, None, None, False, termination=results.termination_condition.name)
        rows, duals = self.solver._pyomo_con_to_solver_con_map, self.solver._sol.row_dual
        balance = [duals[rows[self.m.balance[j]]] if j in self.m.balance else 0.0 for j in range(self.contracts)]
        objective = results.best_feasible_objective
        return Solved(self._column_values(), objective, objective, True, duals=balance,
                      termination=results.termination_condition.name)

    def solve_integer(self, eligible: list[bool], time_left: float) -> Solved:
        """Whole lots, only on eligible columns (the others stay at zero).

        The columns' integrality and bounds go to HiGHS directly, and appsi is told no variable changed:
        its update compares every variable's bounds and domain, and its solution loader sets every
        Pyomo value (at 100,000 orders with 30% bound clients, half of this stage). The Pyomo model keeps
        the LP's domains and bounds; ``solve_price_consistent`` sets them, and appsi then sends every
        column's. Only the lockups' values are loaded: the exact stage's warm start reads them."""
        n = len(self.columns)
        if self._x_columns is None:
            self._column_values()
        lots = np.array([column.lots for column in self.columns], dtype=np.double)
        # Bounds, not fixing (as appsi would send them): 0 to the lots, 0 to 0 for a column not eligible.
        upper = np.where(np.array(eligible, dtype=bool), lots, 0.0)
        highs = self.solver._solver_model
        highs.changeColsBounds(n, self._x_columns, np.zeros(n, dtype=np.double), upper)
        highs.changeColsIntegrality(n, self._x_columns, np.full(n, highspy.HighsVarType.kInteger))
        update = self.solver.update_config
        update.update_vars = False
        try:
            results = self._solve(time_left)
        finally:
            update.update_vars = True
        if results.best_feasible_objective is None:
            return Solved(None, None, results.best_objective_bound, False,
                          termination=results.termination_condition.name)
        results.solution_loader.load_vars(list(self.m.lockup.values()))
        return Solved(self._column_values(), results.best_feasible_objective, results.best_objective_bound,
                      results.termination_condition == TerminationCondition.optimal,
                      termination=results.termination_condition.name)

    def solve_price_consistent(self, start: list[float], time_left: float) -> Solved:
        """The exact problem: one price per contract chosen among its limit prices, and only orders in
        the money at that price may fill. Starts from ``start`` (a feasible, consistent fill).

        Per contract with limit prices P_0 < ... < P_m-1, binary g[k] = [price index >= k] (a
        staircase); a buy at P_a may fill only if g[a+1] = 0, a sell at P_b only if g[b] = 1.
        """
        m, columns = self.m, self.columns
        levels: dict[int, list] = {}
        for column in columns:
            levels.setdefault(column.contract, set()).add(column.price)
        levels = {j: sorted(prices) for j, prices in levels.items()}
        keys = [(j, k) for j in sorted(levels) for k in range(1, len(levels[j]))]
        m.G = pyo.Set(initialize=keys, dimen=2)
        m.g = pyo.Var(m.G, domain=pyo.Binary)
        m.stairs = pyo.Constraint([(j, k) for j, k in keys if k + 1 < len(levels[j])],
                                  rule=lambda _, j, k: m.g[j, k] >= m.g[j, k + 1])

        def eligible(_, i):
            column = columns[i]
            index = levels[column.contract].index(column.price)
            if column.side > 0:  # a buy fills only if the price index <= its own
                if index + 1 >= len(levels[column.contract]):
                    return pyo.Constraint.Skip
                return m.x[i] <= column.lots * (1 - m.g[column.contract, index + 1])
            if index == 0:  # a sell fills only if the price index >= its own
                return pyo.Constraint.Skip
            return m.x[i] <= column.lots * m.g[column.contract, index]

        m.eligible = pyo.Constraint(m.C, rule=eligible)
        # Whole lots; with the bounds below appsi sends every column's domain and bounds (``solve_integer``
        # set HiGHS' own behind its back).
        m.x.domain = pyo.NonNegativeIntegers
        self.solver.add_constraints([*m.stairs.values(), *m.eligible.values()])
        # The start: its fills as they are, its price at the highest filled sell limit.
        for i in m.C:
            m.x[i].setub(columns[i].lots)
            m.x[i].set_value(round(start[i]))
        for j, prices in levels.items():
            sold = [columns[i].price for i in m.C
                    if columns[i].contract == j and columns[i].side < 0 and start[i] > 0.5]
            index = prices.index(max(sold)) if sold else 0
            for k in range(1, len(prices)):
                m.g[j, k].set_value(1 if index >= k else 0)
        self.solver.config.warmstart = True
        results = self._solve(time_left)
        if results.best_feasible_objective is None:
            return Solved(None, None, results.best_objective_bound, False,
                          termination=results.termination_condition.name)
        results.solution_loader.load_vars()
        lots = [pyo.value(m.x[i]) for i in m.C]
        return Solved(lots, results.best_feasible_objective, results.best_objective_bound,
                      results.termination_condition == TerminationCondition.optimal,
                      termination=results.termination_condition.name)
