"""The engine where collateral binds (issue 14): time priority among bound clients, the price rule counting
only affordable lots, never below the simple clearing, the repair, and why each open order is open."""

from dataclasses import replace
from decimal import Decimal as D

import pytest

from bench.auction_book import book
from ccp.contracts.payoffs import ContractKind, Terms
from ccp.matching.auction import (
    AuctionInput,
    AuctionSettings,
    ClientSpec,
    ContractSpec,
    OrderSpec,
    input_from_document,
    input_to_document,
    reasons_from_document,
    reasons_halted,
    result_to_document,
)
from ccp.matching.engine import _finish, _headroom, _prepare, _walk, clear, verify

CALL = ContractSpec("C100", Terms(ContractKind.CALL, D(50), D(150), D(100)), D(1), D(1), "P")
RICH = D(10**6)


def order(n, client, side, price, qty, contract="C100"):
    return OrderSpec(str(n), client, contract, side, D(price), D(qty), n)


def auction(*orders, budgets=None, **settings):
    budgets = budgets or {}
    clients = [ClientSpec(c, D(budgets.get(c, RICH))) for c in sorted({o.client for o in orders})]
    return AuctionInput((CALL,), tuple(clients), tuple(orders), AuctionSettings(**settings))


def fills(result):
    return {f.order: f.quantity for f in result.fills}


def test_time_priority_among_bound_clients_at_the_marginal_price():
    """Buys at 12 from L1 (collateral 25, earliest, 3 lots), E1 (1 lot), L2 (collateral 25, 3 lots), E2
    (1 lot), against a sell of 3 at 10. A bought call costs its premium only (no lockup: it never
    loses more), so L1 and L2 can each afford 2 lots (24 <= 25 < 36); E1, E2 and the seller are rich.
    All buys are at one price, so every way to sell the 3 lots has the same welfare 3 x (12 - 10) = 6:
    time priority decides. L1 is first and takes what it can afford, 2 lots; E1 is next, 1 lot; that is
    the 3 lots sold, and L2 and E2 get nothing. The price: filled sell 10, filled buys 12 -> [10, 12];
    below 12 the affordable open buys press (L2's 2 lots, E2's 1; L1's third lot is not affordable): 12."""
    result = clear(auction(order(1, "L1", "buy", 12, 3), order(2, "E1", "buy", 12, 1), order(3, "L2", "buy", 12, 3),
                           order(4, "E2", "buy", 12, 1), order(5, "S", "sell", 10, 3), budgets={"L1": 25, "L2": 25}))
    assert fills(result) == {"1": D(2), "2": D(1), "5": D(3)}
    assert result.prices == {"C100": D(12)} and result.welfare == 6 and result.status == "optimal"
    assert result.reasons == {"1": "collateral", "3": "priority", "4": "priority"}


def test_the_price_rule_counts_only_affordable_unmet_lots():
    """A (rich) buys 1 at 12, B (rich) sells 1 at 8, S (rich) sells 1 at 10, L buys 5 at 12 with no
    collateral at all (budget 0: it cannot afford a single lot). The best clearing is A with B (welfare 4);
    the prices every fill allows are [8, 12]. Counting L's 5 lots as unmet demand would push the price to
    12 (pressure 1: S's lot, its limit 10 under the price), leaving the free seller S open below the price;
    L's lots are not demand anyone can meet, so the pressure is 0 on [8, 10] and the middle, 10, is kept."""
    result = clear(auction(order(1, "A", "buy", 12, 1), order(2, "L", "buy", 12, 5), order(3, "B", "sell", 8, 1),
                           order(4, "S", "sell", 10, 1), budgets={"L": 0}))
    assert fills(result) == {"1": D(1), "3": D(1)}
    assert result.prices == {"C100": D(10)}
    assert result.reasons == {"2": "collateral", "4": "priority"}


def test_a_limited_solve_is_never_below_the_collateral_capped_uncross():
    """The guard stops the solver before any answer: the fallback still lets a bound client trade what it
    can afford. P (collateral 30) bids 12 for 5 calls, R (rich) offers 5 at 10: P affords 2 (24 <= 30)."""
    limited = auction(order(1, "P", "buy", 12, 5), order(2, "R", "sell", 10, 5), budgets={"P": 30},
                      time_limit_s=D("0.000001"))
    result = clear(limited)
    assert result.time_guard and result.method == "greedy (no MIP answer)" and result.status == "fallback"
    assert fills(result) == {"1": D(2), "2": D(2)} and result.welfare == 4 == result.fallback_welfare
    assert result.reasons == {"1": "collateral", "2": "priority"}
    assert clear(replace(limited, settings=AuctionSettings())).welfare == 4  # no better answer exists


def test_a_solver_answer_below_the_fallback_is_not_kept():
    """Generated bound books cleared with every work limit from none to generous: the kept welfare is the
    best of the candidates, never below the fallback, and the result is sound."""
    for seed in range(4):
        generated = book(400, contract_count=3, clients=40, binding_share=0.5, seed=seed)
        for nodes in (0, 1, 1000):
            limited = replace(generated, settings=replace(generated.settings, mip_max_nodes=nodes))
            result = clear(limited)
            assert result.welfare == max(result.candidates.values()) >= result.fallback_welfare
            assert verify(_prepare(limited), result) is None and "rejected_solution" not in result.timings
            if nodes == 0:  # no node at all: no MIP answer
                assert result.method == "greedy (no MIP answer)" and result.terminations["mip"] == "maxIterations"
            assert not crossing_pairs_left(limited, result)


def crossing_pairs_left(auction_in, result):
    """Pairs of a buy and a sell of clients whose collateral cannot bind, both with lots open, that could
    fill together with one uniform price still fitting every fill of their contract."""
    bound, filled = set(result.binding_clients), fills(result)
    pairs = []
    for symbol in {o.contract for o in auction_in.orders}:
        mine = [o for o in auction_in.orders if o.contract == symbol]
        done = [o for o in mine if filled.get(o.id)]
        low = max((o.price for o in done if o.side == "sell"), default=None)
        high = min((o.price for o in done if o.side == "buy"), default=None)
        open_ = [o for o in mine if o.client not in bound and filled.get(o.id, D(0)) < o.quantity]
        for buy in (o for o in open_ if o.side == "buy"):
            for sell in (o for o in open_ if o.side == "sell"):
                lo = sell.price if low is None else max(low, sell.price)
                hi = buy.price if high is None else min(high, buy.price)
                if buy.price >= sell.price and lo <= hi:
                    pairs.append((buy.id, sell.id))
    return pairs


def test_the_repair_fills_crossing_orders_of_unbound_clients():
    """An answer that left a crossing pair of rich clients open (as a solver stopped early may): the repair
    fills it within the prices the other fills allow, and leaves the bound client's unaffordable lots."""
    given = auction(order(1, "A", "buy", 12, 2), order(2, "B", "sell", 9, 2), order(3, "C", "buy", 11, 1),
                    order(4, "D", "sell", 11, 3), order(5, "L", "buy", 13, 2), budgets={"L": 13})
    prepared = _prepare(given)
    answer = {"1": 1, "2": 1}  # A and B one lot each: C, D, L and one more lot of A and B still cross
    head = _headroom(prepared)
    for order_id, lots in answer.items():
        head.add(order_id, lots)
    _walk(prepared, head, "C100", answer)
    # best buy first: L (budget 13) affords one lot at 13, against B's second lot; then A's second lot and
    # C's lot against D's at 11 (the prices left: [11, 11]); L's second lot stays open
    assert answer == {"5": 1, "1": 2, "2": 2, "3": 1, "4": 2}


def test_every_open_order_has_a_reason_and_the_documents_carry_them():
    generated = book(600, contract_count=3, clients=60, binding_share=0.4, seed=5)
    result = clear(generated)
    filled = fills(result)
    open_orders = {o.id for o in generated.orders if filled.get(o.id, D(0)) < o.quantity}
    assert set(result.reasons) == open_orders and set(result.reasons.values()) <= {"limit", "collateral", "priority"}
    document = result_to_document(result)
    assert reasons_from_document(document) == result.reasons
    assert reasons_from_document({"format": "ccp-auction-result/1", "fills": []}) == {}  # an old document
    halted = reasons_halted(result.reasons, [(o.id, o.contract) for o in generated.orders], {CALL.symbol, "BTC"})
    assert halted == result.reasons  # no order on those symbols
    symbol = generated.orders[0].contract
    halted = reasons_halted(result.reasons, [(o.id, o.contract) for o in generated.orders], {symbol})
    assert {i for i, c in halted.items() if c == "halted"} == {o.id for o in generated.orders if o.contract == symbol}


def test_an_old_input_document_reads_with_the_default_work_limits():
    document = input_to_document(book(50, contract_count=3, clients=10))
    document["settings"] = {"time_limit_s": "10", "mip_rel_gap": "0"}  # as stored before issue 14
    settings = input_from_document(document).settings
    assert (settings.mip_max_nodes, settings.simplex_iteration_limit) == (1000, 1_000_000)
    document["settings"]["mip_max_nodes"] = "25"
    assert input_from_document(document).settings.mip_max_nodes == 25
    assert input_to_document(input_from_document(document))["settings"]["mip_max_nodes"] == "25"
    for bad in ("-1", "2.5", 7):
        document["settings"]["mip_max_nodes"] = bad
        try:
            input_from_document(document)
        except ValueError as exc:
            assert "mip_max_nodes" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_a_bound_client_s_own_earlier_order_fills_first_at_one_price():
    """L (collateral 100) sells 3 calls at 10 twice (orders 1 then 2); each sold call may lose 50 - 10 = 40, so
    L affords 2 lots in all (80 <= 100 < 120). An answer that fills the later order (as a solver may: to L's
    collateral and to welfare it is the same) is repaired to time priority: the earlier order's 2 lots."""
    given = auction(order(1, "L", "sell", 10, 3), order(2, "L", "sell", 10, 3), order(3, "B", "buy", 10, 6),
                    budgets={"L": 100})
    prepared = _prepare(given)
    name, repaired, welfare, _ = _finish(prepared, ["C100"], "test", {"2": 2, "3": 2}, {})
    assert repaired == {"1": 2, "3": 2} and welfare == 0
    assert fills(clear(given)) == {"1": D(2), "3": D(2)}


def test_a_giver_its_own_client_s_first_order_cannot_take_from_gives_to_the_next_order_ahead():
    """A (collateral 20) bids 30 (order 1) and 20 (order 3), B bids 20 (order 2), one call is offered at 10. A
    cannot afford its 30 bid, so one of the two bids at 20 fills: B's, the earlier. An answer that fills A's is
    repaired: A's 30 bid cannot take A's lot (it costs 10 more), and B's bid, next in priority, takes it."""
    given = auction(order(1, "A", "buy", 30, 1), order(2, "B", "buy", 20, 1), order(3, "A", "buy", 20, 1),
                    order(4, "S", "sell", 10, 1), budgets={"A": 20})
    name, repaired, welfare, _ = _finish(_prepare(given), ["C100"], "test", {"3": 1, "4": 1}, {})
    assert repaired == {"2": 1, "4": 1} and welfare == 10


def test_a_bound_client_s_own_earlier_order_takes_its_lot_behind_a_better_bid_it_cannot_afford():
    """A (collateral 10) bids 20 (order 1) and 10 twice (orders 2, 3): it affords one lot at 10. An answer that
    fills order 3 is repaired to order 2, though order 1, ahead of both, can take neither."""
    given = auction(order(1, "A", "buy", 20, 1), order(2, "A", "buy", 10, 1), order(3, "A", "buy", 10, 1),
                    order(4, "S", "sell", 10, 1), budgets={"A": 10})
    name, repaired, welfare, _ = _finish(_prepare(given), ["C100"], "test", {"3": 1, "4": 1}, {})
    assert repaired == {"2": 1, "4": 1}


def test_a_taker_no_other_client_can_give_to_takes_from_its_own_client_s_later_order():
    """A (collateral 10) bids 10 twice (orders 1, 2), B bids 10 (order 3), two calls are offered at 10. With
    order 2 filled A affords no more, so B's filled order cannot give order 1 a lot; A's own order 2 can."""
    given = auction(order(1, "A", "buy", 10, 1), order(2, "A", "buy", 10, 1), order(3, "B", "buy", 10, 1),
                    order(4, "S", "sell", 10, 2), budgets={"A": 10})
    name, repaired, welfare, _ = _finish(_prepare(given), ["C100"], "test", {"2": 1, "3": 1, "4": 2}, {})
    assert repaired == {"1": 1, "3": 1, "4": 2}


@pytest.mark.xfail(strict=True, reason="known gap: each contract is repaired once, in symbol order; settling "
                   "every contract again until none changes cost about 0.4 s of CPU per 100k-order auction")
def test_a_move_on_one_contract_opens_a_move_on_a_contract_repaired_before():
    """Two calls in two portfolios, X repaired before Y. A (collateral 15) bids 10 on each, after B on Y and
    before C on X. In the answer A's Y bid and C's X bid fill: A, at 10 of 15, cannot take C's lot on X. Y's
    repair gives B (ahead) A's lot there; then A can, and takes C's lot on X."""
    x, y = (ContractSpec(s, CALL.terms, D(1), D(1), p) for s, p in (("X", "P1"), ("Y", "P2")))
    given = AuctionInput((x, y), tuple(ClientSpec(c, D(15) if c == "A" else RICH) for c in "ABCS"), (
        OrderSpec("1", "A", "X", "buy", D(10), D(1), 1), OrderSpec("2", "C", "X", "buy", D(10), D(1), 5),
        OrderSpec("3", "S", "X", "sell", D(10), D(1), 6), OrderSpec("4", "B", "Y", "buy", D(10), D(1), 2),
        OrderSpec("5", "A", "Y", "buy", D(10), D(1), 7), OrderSpec("6", "S", "Y", "sell", D(10), D(1), 8)))
    name, repaired, welfare, _ = _finish(_prepare(given), ["X", "Y"], "test", {"2": 1, "3": 1, "5": 1, "6": 1}, {})
    assert repaired == {"1": 1, "3": 1, "4": 1, "6": 1}
