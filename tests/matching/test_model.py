"""The auction model's own loading into HiGHS: the same model, entry for entry, as Pyomo's appsi gives it."""

import numpy as np
import pytest
from pyomo.contrib.appsi.solvers import Highs

from bench.auction_book import book
from ccp.matching.engine import _columns, _prepare
from ccp.matching.model import AuctionModel


def _stages(model: AuctionModel) -> list:
    """The LP, the MIP at the LP's prices and the exact stage from the MIP's answer, as the engine runs them;
    after each, HiGHS' model (every array of it) and the answer."""
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
    # ... and the same model handed to appsi's own HiGHS interface, every update check on
    columns, clients = _columns(prepared, symbols)
    theirs = AuctionModel(columns, len(symbols), clients, auction.settings)
    stock = Highs()
    stock.config.mip_gap, stock.config.load_solution = theirs.solver.config.mip_gap, False
    stock.highs_options = dict(theirs.solver.highs_options)
    theirs.solver = stock
    # When both go through the LP, the MIP and the exact stage
    # Then HiGHS holds the same model after each stage, entry for entry, and gives the same answers
    assert _stages(ours) == _stages(theirs)
