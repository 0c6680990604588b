"""The auction model's own loading into HiGHS and its own updates between the stages: the same model, entry
for entry, as Pyomo's appsi gives it, and the same answers."""

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from bench.auction_book import book
from ccp.matching.engine import _columns, _prepare
from ccp.matching.model import AuctionModel, Solved


class _Appsi(AuctionModel):
    """The LP and the MIP stage through appsi alone: every variable's domain and bounds set in Pyomo and
    found by appsi's update, every value loaded into Pyomo and read back from it."""

    def solve_relaxation(self, time_left):
        results = self._solve(time_left)
        if results.termination_condition != TerminationCondition.optimal:
            return Solved(None, None, None, False, termination=results.termination_condition.name)
        results.solution_loader.load_vars()
        duals = results.solution_loader.get_duals()
        balance = [duals.get(self.m.balance[j], 0.0) if j in self.m.balance else 0.0 for j in range(self.contracts)]
        objective = results.best_feasible_objective
        return Solved([pyo.value(self.m.x[i]) for i in self.m.C], objective, objective, True, duals=balance,
                      termination=results.termination_condition.name)

    def solve_integer(self, eligible, time_left):
        self.m.x.domain = pyo.NonNegativeIntegers
        for x, column, allowed in zip(self.m.x.values(), self.columns, eligible, strict=True):
            x.setub(column.lots if allowed else 0)
        results = self._solve(time_left)
        if results.best_feasible_objective is None:
            return Solved(None, None, results.best_objective_bound, False,
                          termination=results.termination_condition.name)
        results.solution_loader.load_vars()
        return Solved([pyo.value(self.m.x[i]) for i in self.m.C], results.best_feasible_objective,
                      results.best_objective_bound, results.termination_condition == TerminationCondition.optimal,
                      termination=results.termination_condition.name)


def _stages(model: AuctionModel) -> list:
    """The LP, the MIP at the LP's prices and the exact stage from the MIP's answer, as the engine runs them;
    after each, HiGHS' model (every array of it) and the answer; after the MIP, the lockups' values."""
    snapshots = []

    def snapshot(solved):
        lp = model.solver._solver_model.getLp()
        arrays = [lp.col_cost_, lp.col_lower_, lp.col_upper_, lp.row_lower_, lp.row_upper_, lp.integrality_,
                  lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_]
        snapshots.append(([np.asarray(a).tolist() for a in arrays], lp.sense_, solved.lots, solved.objective,
                          solved.bound, solved.duals, solved.termination))

    relaxed = model.solve_relaxation(60)
    snapshot(relaxed)
    prices = [abs(d) for d in relaxed.duals]
    eligible = [(c.price * c.lot >= prices[c.contract]) == (c.side > 0) for c in model.columns]
    solved = model.solve_integer(eligible, 60)
    snapshot(solved)
    snapshots.append([v.value for v in model.m.lockup.values()])  # the exact stage's warm start reads them
    snapshot(model.solve_price_consistent(solved.lots, 60))
    return snapshots


@pytest.mark.parametrize("seed", [7, 11])
def test_highs_gets_the_model_appsi_would_give_it(seed):
    # Given a book where a third of the clients are bound (kink rows, budget rows, merged columns)
    auction = book(2000, contract_count=6, clients=150, binding_share=0.3, seed=seed)
    prepared = _prepare(auction)
    symbols = sorted({o.contract for o in prepared.orders.values() if o.client in prepared.binding})
    columns, clients = _columns(prepared, symbols)
    ours = AuctionModel(columns, len(symbols), clients, auction.settings)
    # ... and the same model handed to appsi's own HiGHS interface, every update check on, every change
    # between the stages made in Pyomo
    columns, clients = _columns(prepared, symbols)
    theirs = _Appsi(columns, len(symbols), clients, auction.settings)
    stock = Highs()
    stock.config.mip_gap, stock.config.load_solution = theirs.solver.config.mip_gap, False
    stock.highs_options = dict(theirs.solver.highs_options)
    theirs.solver = stock
    # When both go through the LP, the MIP and the exact stage
    # Then HiGHS holds the same model after each stage, entry for entry, and gives the same answers
    assert _stages(ours) == _stages(theirs)
