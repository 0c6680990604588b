"""Clear one batch auction: uniform price per contract, welfare-maximising, collateral-feasible,
deterministic. Pure: takes an AuctionInput, returns an AuctionResult; floats only inside the solver.

1. Reduce. A client whose collateral cannot bind even if all its orders fill (its current lockups
   plus every order's worst case fit its budget; lockups are subadditive) needs no collateral row,
   and its orders at one price share a column. Contracts that no binding client trades are cleared
   exactly by the price-time uncross, without a solver (method ``uncross``).
2. The fallback, always computed: the simple clearing with collateral (``greedy``), each coupled
   contract's price-time uncross in which a bound client's order fills by what its collateral still
   allows (``headroom.Headroom``, exact). It runs on a second thread while HiGHS (which releases the
   GIL) solves step 3's MIP: its answer does not depend on when it runs.
3. The coupled contracts go to the Pyomo model (``model.py``): its LP relaxation gives the certified
   upper bound on welfare and, from the balance rows' duals, a price per contract; the MIP then
   fills whole lots, only of orders in the money at those prices (``lp-prices+mip``). While the best
   answer is further than ``exact_stage_gap`` from the bound, the exact price-choice MIP, warm-started
   from it (``lp-prices+mip+exact``). Merged columns are shared by time priority.
4. Every answer is repaired (``_finish``): refused if a client is over budget or no uniform price fits
   (a solver's floats); else crossing orders left open are filled within collateral and the prices
   the other fills allow (``_walk``: no two crossing orders of clients whose collateral does not bind
   stay open), and lots move to orders ahead in price-time priority at the same or a better limit
   whenever both clients' collateral allows (``_prioritise``: time priority among bound clients at the
   marginal price). Welfare never falls in the repair.
5. The best welfare is kept, the fallback's on no better answer: never worse than the simple clearing.
   Each contract's price comes from its fills by the rule in ``uncross.clearing_price``, counting only
   lots their clients can still afford; each order left open gets its reason (``_reason``).
6. The result is checked in Decimal (balance, limits, lots, every bound client's collateral); a
   failure (never expected) falls back to the uncross among clients whose collateral cannot bind.

Determinism: HiGHS runs on one thread with a fixed seed and stops on work limits (simplex iterations,
branch-and-bound nodes: ``AuctionSettings``); everything else is exact arithmetic in a fixed order, so
the same input gives the same result on any machine under any load. The settings' ``time_limit_s`` is
a wall-clock guard only: no stage starts after it, a stage it stops reports ``maxTimeLimit`` in the
result's ``terminations`` and ``time_guard`` is true (only then may a replay differ).

``status``: ``optimal`` (the welfare reaches the certified bound, floored to the welfare grid), else
``feasible`` (a solver's answer, kept) or ``fallback`` (the greedy clearing kept: the solver gave no
answer, an answer refused, or none better). ``method``: ``uncross``, ``lp-prices+mip``,
``lp-prices+mip+exact``, ``greedy (no MIP answer)``, ``greedy (MIP answer rejected)``, ``greedy (MIP
answer not better)``; ``fallback-uncross (<problem>)`` after a failed final check.
"""

from __future__ import annotations

import decimal
import functools
import math
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from importlib.metadata import version

from ccp.contracts.payoffs import (
    Leg,
    kink_points,
    lockup_amount,
    lockup_amounts,
    order_worst_cost,
    payoff_per_unit,
    premium_per_unit,
)
from ccp.matching.auction import (
    AuctionInput,
    AuctionResult,
    ClientSpec,
    ContractSpec,
    Fill,
    OrderSpec,
    auction_gap,
    order_id_key,
)
from ccp.matching.headroom import UNLIMITED, Headroom
from ccp.matching.model import AuctionModel, BindingClient, Column
from ccp.matching.uncross import LotOrder, allocate_by_priority, by_priority, clearing_price, priority_key, uncross
from ccp.memory import gc_paused

SOLVER = f"HiGHS {version('highspy')} via Pyomo {version('pyomo')} (appsi)"
_PRICE_TOLERANCE = 1e-9
_OPTIMALITY_TOLERANCE = Decimal("1e-9")


class AuctionInputError(ValueError):
    """The input breaks a rule the engine relies on (off-grid price or quantity, ...)."""


@dataclass
class _Book:
    auction: AuctionInput
    contracts: dict[str, ContractSpec]
    clients: dict[str, ClientSpec]
    orders: dict[str, OrderSpec]
    lot_orders: dict[str, LotOrder]
    by_contract: dict[str, list[str]]  # order ids per contract, in time order (priority, then id)
    binding: set[str]  # client ids whose collateral can bind
    underwater: set[str]  # clients whose budget does not even cover their current lockups
    sides: dict[str, tuple[list[LotOrder], list[LotOrder]]] = field(default_factory=dict)  # ``_sides``
    view: _OrderView | None = None  # ``_headroom``'s, made once


def _lots(order: OrderSpec, contract: ContractSpec) -> int:
    lots = order.quantity / contract.lot
    if lots != lots.to_integral_value():
        raise AuctionInputError(f"order {order.id}: quantity {order.quantity} is not whole lots of {contract.lot}")
    if order.price % contract.tick:
        raise AuctionInputError(f"order {order.id}: price {order.price} is off the tick grid {contract.tick}")
    return int(lots)


def _portfolio_legs(book: _Book, client_id: str, extra: dict[str, Decimal] | None = None) -> dict[str, list[Leg]]:
    client = book.clients[client_id]
    quantities: dict[str, Decimal] = defaultdict(Decimal)
    for symbol, qty in client.positions.items():
        quantities[symbol] += qty
    for symbol, qty in (extra or {}).items():
        quantities[symbol] += qty
    legs: dict[str, list[Leg]] = defaultdict(list)
    for symbol, qty in sorted(quantities.items()):
        if qty:
            contract = book.contracts[symbol]
            legs[contract.portfolio].append(Leg(contract.terms, qty))
    return legs


def client_cost(book: _Book, client_id: str, fills: dict[str, Decimal]) -> Decimal:
    """Premiums at the limit price plus the lockups after ``fills`` (order id -> quantity) of this client."""
    premiums, legs = _client_portfolios(book, client_id, fills)
    return premiums + sum((lockup_amount(portfolio) for portfolio in legs.values()), Decimal(0))


def _client_portfolios(book: _Book, client_id: str, fills: dict[str, Decimal]) -> tuple[Decimal, dict[str, list[Leg]]]:
    """``client_cost``'s parts: the premiums at the limit price, and the portfolios after ``fills``."""
    premiums = Decimal(0)
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    for order_id, qty in fills.items():
        order = book.orders[order_id]
        if order.client != client_id or not qty:
            continue
        sign = 1 if order.side == "buy" else -1
        premiums += sign * premium_per_unit(book.contracts[order.contract].terms, order.price) * qty
        deltas[order.contract] += sign * qty
    return premiums, _portfolio_legs(book, client_id, deltas)


def _prepare(auction: AuctionInput) -> _Book:
    contracts = {c.symbol: c for c in auction.contracts}
    orders = {o.id: o for o in auction.orders}
    lot_orders = {o.id: LotOrder(o.id, o.side, o.price, _lots(o, contracts[o.contract]), o.priority)
                  for o in auction.orders}
    by_contract: dict[str, list[str]] = defaultdict(list)
    by_client: dict[str, list[OrderSpec]] = defaultdict(list)
    for order in sorted(auction.orders, key=operator.attrgetter("priority", "id")):
        by_contract[order.contract].append(order.id)
        by_client[order.client].append(order)
    book = _Book(auction, contracts, {c.id: c for c in auction.clients}, orders, lot_orders, by_contract, set(), set())

    @functools.cache
    def unit_worst(symbol: str, side: str, price: Decimal) -> Decimal:
        # Orders share price levels: one Decimal computation per level, not per order.
        return order_worst_cost(contracts[symbol].terms, side, price, Decimal(1))

    for client in auction.clients:
        current = sum((lockup_amount(p) for p in _portfolio_legs(book, client.id).values()), Decimal(0))
        if current > client.budget:
            book.underwater.add(client.id)
            continue
        worst = sum((unit_worst(o.contract, o.side, o.price) * o.quantity for o in by_client[client.id]),
                    Decimal(0))
        if current + worst > client.budget:
            book.binding.add(client.id)
    return book


def _tradeable(book: _Book, order_id: str, with_binding: bool) -> bool:
    client = book.orders[order_id].client
    return client not in book.underwater and (with_binding or client not in book.binding)


def _uncross_contracts(book: _Book, symbols: list[str], with_binding: bool) -> dict[str, int]:
    fills: dict[str, int] = {}
    # _tradeable for every order, asked once: in the live book nobody binds, and every order trades.
    left_out = book.underwater if with_binding else book.underwater | book.binding
    for symbol in symbols:
        fills.update(uncross((book.lot_orders[i] for i in book.by_contract[symbol]
                              if not left_out or book.orders[i].client not in left_out), timed=True))
    return fills


def _uncross_welfare(book: _Book, fills: dict[str, int]) -> Decimal:
    total = Decimal(0)
    for order_id, lots in fills.items():
        order = book.orders[order_id]
        total += (1 if order.side == "buy" else -1) * order.price * lots * book.contracts[order.contract].lot
    return total


def _columns(book: _Book, symbols: list[str]) -> tuple[list[Column], list[BindingClient]]:
    columns: list[Column] = []
    merged: dict[tuple[int, int, Decimal], int] = {}
    bound: list[Column] = []  # a bound client's own columns, its client id in ``client`` until numbered
    for j, symbol in enumerate(symbols):
        lot = book.contracts[symbol].lot
        for order_id in book.by_contract[symbol]:
            order = book.orders[order_id]
            if order.client in book.underwater:  # not _tradeable
                continue
            side = 1 if order.side == "buy" else -1
            lots = book.lot_orders[order_id].lots
            if order.client in book.binding:
                columns.append(Column(j, side, order.price, lots, lot, order.client, [order_id]))
                bound.append(columns[-1])
                continue
            key = (j, side, order.price)
            if (index := merged.get(key)) is None:
                index = merged[key] = len(columns)
                columns.append(Column(j, side, order.price, 0, lot))
            column = columns[index]
            column.lots += lots
            column.order_ids.append(order_id)
    # The bound clients trading these contracts (never one under water), numbered in id order.
    binding_ids = sorted({column.client for column in bound})
    client_index = {c: k for k, c in enumerate(binding_ids)}
    for column in bound:
        column.client = client_index[column.client]
    specs = [book.contracts[s] for s in symbols]

    # Columns share contracts, sides and prices: each Decimal product once, in the same order of operations.
    @functools.cache
    def premium(contract: int, side: int, price: Decimal) -> float:
        return float(side * premium_per_unit(specs[contract].terms, price) * specs[contract].lot)

    @functools.cache
    def coefficient(contract: int, side: int, point: Decimal) -> float:
        return float(side * specs[contract].lot * payoff_per_unit(specs[contract].terms, point))

    by_client: dict[int, list[int]] = defaultdict(list)
    for i, column in enumerate(columns):
        if column.client is not None:
            by_client[column.client].append(i)
    clients = []
    for client_id in binding_ids:
        mine = by_client[client_index[client_id]]
        budget = book.clients[client_id].budget
        premiums = {i: premium(columns[i].contract, columns[i].side, columns[i].price) for i in mine}
        positions = _portfolio_legs(book, client_id)
        portfolios = sorted(set(positions) | {specs[columns[i].contract].portfolio for i in mine})
        rows: dict[str, list[tuple[float, dict[int, float]]]] = {}
        for portfolio in portfolios:
            cols = [i for i in mine if specs[columns[i].contract].portfolio == portfolio]
            keys = [(columns[i].contract, columns[i].side) for i in cols]
            # The kink points depend on the contracts only: one leg per contract traded.
            traded = sorted({contract for contract, _ in keys})
            legs = positions.get(portfolio, []) + [Leg(specs[contract].terms, Decimal(1)) for contract in traded]
            rows[portfolio] = []
            for point in kink_points(legs):
                held = sum((leg.qty * payoff_per_unit(leg.terms, point) for leg in positions.get(portfolio, [])),
                           Decimal(0))
                at = {key: coefficient(*key, point) for key in keys}
                # A row no fills can make bind (lockup >= 0 already implies it) stays out of the model:
                # fewer rows for Pyomo to translate (a client with only bought options has none).
                if -held <= 0 and all(coef >= 0 for coef in at.values()):
                    continue
                rows[portfolio].append((float(-held), dict(zip(cols, map(at.__getitem__, keys), strict=True))))
        clients.append(BindingClient(float(budget), rows, premiums))
    return columns, clients


def _fills_from_columns(book: _Book, columns: list[Column], lots: list[float]) -> dict[str, int]:
    fills: dict[str, int] = {}
    for column, value in zip(columns, lots, strict=True):
        filled = int(round(value))
        if filled <= 0:
            continue
        if column.client is not None:
            fills[column.order_ids[0]] = filled
        else:
            fills.update(allocate_by_priority([book.lot_orders[i] for i in column.order_ids], filled))
    return fills


def _result(book: _Book, fills: dict[str, int], bound: Decimal, status: str, method: str,
            timings: dict[str, float], welfare: Decimal | None = None, head: Headroom | None = None,
            fallback_welfare: Decimal | None = None, terminations: dict[str, str] | None = None,
            candidates: dict[str, Decimal] | None = None) -> AuctionResult:
    """The result of ``fills``; ``welfare``: their ``_uncross_welfare`` when the caller has it; ``head``:
    the collateral state of these fills (None when no client binds)."""
    started = time.perf_counter()
    caps: dict[str, int] = {}

    def cap(order: LotOrder) -> int:
        if head is None:
            return UNLIMITED
        if (room := caps.get(order.id)) is None:
            room = caps[order.id] = head.cap(order.id)
        return room

    def affordable(order: LotOrder, left: int) -> int:
        return min(left, cap(order))

    prices = {}
    reasons: dict[str, str] = {}
    for symbol, order_ids in book.by_contract.items():
        contract = book.contracts[symbol]
        orders = [book.lot_orders[i] for i in order_ids]
        price = clearing_price(orders, fills, contract.tick, contract.reference_price,
                               affordable=affordable if head is not None else None)
        if price is not None:
            prices[symbol] = price
        for order in orders:
            if order.lots > fills.get(order.id, 0):
                reasons[order.id] = _reason(order, price, cap)
    fill_rows = tuple(
        Fill(order_id, lots * book.contracts[book.orders[order_id].contract].lot,
             prices[book.orders[order_id].contract])
        for order_id, lots in sorted(fills.items(), key=lambda item: order_id_key(item[0])) if lots > 0)
    if welfare is None:
        welfare = _uncross_welfare(book, fills)
    timings["price_s"] = time.perf_counter() - started
    return AuctionResult(prices=prices, fills=fill_rows, welfare=welfare, upper_bound=max(bound, welfare),
                         status=status, method=method, solver=SOLVER, binding_clients=tuple(sorted(book.binding)),
                         timings=timings, reasons=reasons,
                         fallback_welfare=welfare if fallback_welfare is None else fallback_welfare,
                         terminations=terminations or {}, candidates=candidates or {})


def _reason(order: LotOrder, price: Decimal | None, cap: Callable[[LotOrder], int]) -> str:
    """Why an order is (partly) open: its limit is outside the price (or nothing crossing it traded and
    it could afford a lot), its collateral allows no further lot, or the volume went to orders ahead of
    it (time priority at the margin, or the other side's collateral)."""
    if price is None:
        return "collateral" if cap(order) == 0 else "limit"
    if (order.side == "buy" and order.price < price) or (order.side == "sell" and order.price > price):
        return "limit"
    return "collateral" if cap(order) == 0 else "priority"


def verify(book: _Book, result: AuctionResult, everyone: bool = True) -> str | None:
    """The first broken rule of a result, in exact Decimal; None when it is sound. ``everyone=False``
    checks the collateral of binding clients only: the others fit whatever fills, by construction."""
    volume: dict[str, Decimal] = defaultdict(Decimal)
    quantities: dict[str, Decimal] = {}
    for fill in result.fills:
        order = book.orders[fill.order]
        contract = book.contracts[order.contract]
        if fill.quantity <= 0 or fill.quantity > order.quantity or fill.quantity % contract.lot:
            return f"order {order.id}: fill {fill.quantity} is not whole lots within the order"
        if fill.price != result.prices[order.contract]:
            return f"order {order.id}: not at the uniform price"
        if (order.side == "buy" and fill.price > order.price) or (order.side == "sell" and fill.price < order.price):
            return f"order {order.id}: price {fill.price} outside the limit {order.price}"
        volume[order.contract] += fill.quantity if order.side == "buy" else -fill.quantity
        quantities[order.id] = fill.quantity
    if unbalanced := [s for s, v in volume.items() if v]:
        return f"bought != sold in {unbalanced}"
    by_client: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for order_id, qty in quantities.items():
        by_client[book.orders[order_id].client][order_id] = qty
    checked = [c for c in sorted(by_client) if c not in book.underwater and (everyone or c in book.binding)]
    # client_cost of every client checked, the lockups of all their portfolios at once (``lockup_amounts``:
    # each unit payoff at a kink point computed once).
    parts = {client_id: _client_portfolios(book, client_id, by_client[client_id]) for client_id in checked}
    lockups = lockup_amounts({(c, p): legs for c, (_, portfolios) in parts.items() for p, legs in portfolios.items()})
    for client_id in sorted(by_client):
        if client_id in book.underwater:
            return f"client {client_id} is under water and must not trade"
        if not everyone and client_id not in book.binding:
            continue  # its budget covers all its orders filled at once (lockups are subadditive)
        budget = book.clients[client_id].budget
        premiums, portfolios = parts[client_id]
        if (cost := premiums + sum((lockups[client_id, p] for p in portfolios), Decimal(0))) > budget:
            return f"client {client_id}: collateral {cost} over budget {budget}"
    return None


@gc_paused
def clear(auction: AuctionInput) -> AuctionResult:
    """Clear an auction. Deterministic: the same input gives the same fills and prices on any machine
    under any load, unless the wall-clock guard fired (``terminations`` then says ``maxTimeLimit``)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    book = _prepare(auction)
    coupled = sorted({o.contract for o in book.orders.values() if o.client in book.binding}) if book.binding else []
    free = sorted(set(book.by_contract) - set(coupled))
    fills = _uncross_contracts(book, free, with_binding=True)
    free_welfare = _uncross_welfare(book, fills)
    timings["reduce_s"] = time.perf_counter() - started
    if not coupled:
        # No client binds anywhere: the uncross is the optimum, and its welfare the bound.
        result = _result(book, fills, free_welfare, "optimal", "uncross", timings, welfare=free_welfare,
                         head=_headroom(book) if book.underwater else None)
        timings["total_s"] = time.perf_counter() - started
        return result
    terminations: dict[str, str] = {}
    deadline = started + float(auction.settings.time_limit_s)
    # The fallback: the collateral-capped price-time uncross, repaired like every answer (the repair from
    # nothing), on its own thread while the solver runs: its own terminations, merged first as before.
    # It starts as the MIP goes to HiGHS: the build and the LP stage are mostly Python (Pyomo loading the
    # model), which the two threads could only take turns at; HiGHS' branch and bound runs without the GIL.
    solver = _Solver(book, coupled, timings, terminations, deadline)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="auction-greedy") as pool:
        started_greedy: list = []

        def greedy_start() -> None:
            started_greedy.append(pool.submit(_greedy, book, coupled, decimal.getcontext().copy()))

        mip_fills = solver.lp_and_mip(before_mip=greedy_start)
        if not started_greedy:  # no MIP: the guard fired or the LP gave no answer
            greedy_start()
        greedy_answer, greedy_terminations, timings["greedy_s"] = started_greedy[0].result()
    finished = [greedy_answer]
    merged = {**greedy_terminations, **terminations}
    terminations.clear()
    terminations.update(merged)
    fallback_welfare = finished[0][2]
    lp_bound = solver.bound
    if mip_fills is not None:
        stage = time.perf_counter()
        finished.insert(0, _finish(book, coupled, "lp-prices+mip", mip_fills, terminations))
        timings["repair_s"] = time.perf_counter() - stage
        best = max(f[2] for f in finished if f[1] is not None)
        if auction_gap(best, _grid_bound(book, coupled, solver.bound)) > auction.settings.exact_stage_gap:
            # Below the bound: search all price choices, starting from the best answer so far.
            start = max((f for f in finished if f[1] is not None), key=lambda f: f[2])[1]
            exact = solver.price_choice(start)
            lp_bound = solver.bound
            if exact is not None:
                stage = time.perf_counter()
                finished.insert(0, _finish(book, coupled, "lp-prices+mip+exact", exact, terminations))
                timings["repair_s"] += time.perf_counter() - stage
    finished = [f for f in finished if f[1] is not None]
    # The best welfare; on a tie the first: the exact stage's answer, then the MIP's, then the fallback.
    name, coupled_fills, coupled_welfare, head = max(finished, key=lambda f: f[2])  # max keeps the first of ties
    if lp_bound is not None:
        bound = _grid_bound(book, coupled, lp_bound)
    else:
        # No LP bound: the welfare without collateral (the uncross of everyone) bounds every answer.
        bound = _uncross_welfare(book, _uncross_contracts(book, coupled, True))
    fills.update(coupled_fills)
    welfare = free_welfare + coupled_welfare
    bound = max(free_welfare + bound, welfare)
    proven = bound - welfare <= _OPTIMALITY_TOLERANCE * max(Decimal(1), abs(bound))
    status = "optimal" if proven else "fallback" if name == "greedy" else "feasible"
    if name == "greedy":
        why = "no MIP answer" if mip_fills is None else (
            "MIP answer rejected" if "lp-prices+mip_rejected" in terminations else "MIP answer not better")
        name = f"{name} ({why})"
    result = _result(book, fills, bound, status, name, timings, welfare=welfare, head=head,
                     fallback_welfare=free_welfare + fallback_welfare, terminations=terminations,
                     candidates={n: free_welfare + w for n, _, w, _ in finished})
    if problem := verify(book, result, everyone=False):
        # Never expected (every candidate was checked as it was built): the clients who cannot bind alone.
        timings["rejected_solution"] = 1.0
        return _fallback(book, timings, started, reason=problem)
    timings["total_s"] = time.perf_counter() - started
    return result


def _greedy(book: _Book, coupled: list[str], context: decimal.Context
            ) -> tuple[tuple[str, dict[str, int] | None, Decimal, Headroom | None], dict[str, str], float]:
    """The fallback's answer (``_finish`` from no fills), its terminations and its seconds, in the
    caller's decimal context (a thread starts with the default one)."""
    started, terminations = time.perf_counter(), {}
    with decimal.localcontext(context):
        answer = _finish(book, coupled, "greedy", {}, terminations)
    return answer, terminations, time.perf_counter() - started


def _headroom(book: _Book) -> Headroom:
    clients = {c: (book.clients[c].budget, book.clients[c].positions) for c in book.binding}
    contracts = {s: (c.terms, c.lot, c.portfolio) for s, c in book.contracts.items()}
    if book.view is None:
        book.view = _OrderView(book)
    return Headroom(book.view, contracts, clients, barred=book.underwater)


class _OrderView(dict):
    """order id -> (client, contract, side, limit price, lots), as ``Headroom`` reads an order: made on first
    use and kept, one view per auction (the repairs, the fallback and the result look an order up several times
    each). The threads that share it may both make an entry: the same one."""

    def __init__(self, book: _Book) -> None:
        super().__init__()
        self.book = book

    def __missing__(self, order_id: str) -> tuple[str, str, str, Decimal, int]:
        order = self.book.orders[order_id]
        view = self[order_id] = (order.client, order.contract, order.side, order.price,
                                 self.book.lot_orders[order_id].lots)
        return view


def _unfit(book: _Book, head: Headroom, fills: dict[str, int], intervals: dict[str, tuple]) -> str | None:
    """Why fills a solver produced may not be kept (a client over budget, or no uniform price); ``intervals``:
    ``_intervals(book, fills)``."""
    for client_id in sorted({book.orders[i].client for i, lots in fills.items() if lots}):
        if client_id in book.underwater:
            return f"client {client_id} is under water"
        if not head.fits(client_id):
            return f"client {client_id} over budget"
    for symbol in sorted({book.orders[i].contract for i, lots in fills.items() if lots}):
        low, high = intervals.get(symbol, (None, None))
        if low is None or high is None or low > high:
            return f"{symbol}: no uniform price"
    return None


def _intervals(book: _Book, fills: dict[str, int]) -> dict[str, tuple[Decimal | None, Decimal | None]]:
    """``_interval`` of every contract with fills, in one pass over the fills (not over every order)."""
    ends: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for order_id, lots in fills.items():
        if lots > 0:
            order = book.orders[order_id]
            low, high = ends.get(order.contract, (None, None))
            if order.side == "sell":
                low = order.price if low is None else max(low, order.price)
            else:
                high = order.price if high is None else min(high, order.price)
            ends[order.contract] = low, high
    return ends


def _interval(book: _Book, symbol: str, fills: dict[str, int]) -> tuple[Decimal | None, Decimal | None]:
    """[highest filled sell limit, lowest filled buy limit]: the prices every fill of the contract allows."""
    low = high = None
    for order_id in book.by_contract[symbol]:
        if fills.get(order_id, 0) > 0:
            price = book.orders[order_id].price
            if book.orders[order_id].side == "sell":
                low = price if low is None else max(low, price)
            else:
                high = price if high is None else min(high, price)
    return low, high


def _sides(book: _Book, symbol: str) -> tuple[list[LotOrder], list[LotOrder]]:
    """A contract's buys and sells that may trade (their clients are not under water), each in price-time
    priority; sorted once per auction."""
    if (sides := book.sides.get(symbol)) is None:
        orders, underwater = book.by_contract[symbol], book.underwater
        sides = book.sides[symbol] = by_priority(
            (book.lot_orders[i] for i in orders if book.orders[i].client not in underwater) if underwater
            else map(book.lot_orders.__getitem__, orders), timed=True)
    return sides


def _walk(book: _Book, head: Headroom, symbol: str, fills: dict[str, int],
          interval: tuple[Decimal | None, Decimal | None] | None = None) -> bool:
    """Fill what is left of a contract's crossing orders in price-time priority (the uncross rule), within
    each client's collateral and keeping one uniform price possible: every fill added keeps the highest
    filled sell limit at or below the lowest filled buy limit. Stops at the first pair that no longer
    crosses or would leave no uniform price (the next pairs would not either). From no fills at all it
    is the simple clearing with collateral: each bound client's order filled by what its collateral still
    allows (``Headroom.cap``), skipped at 0. In place; ``interval``: the contract's ``_interval`` when the
    caller has it. Whether it added any lot."""
    buys, sells = _sides(book, symbol)
    added = False
    low, high = interval or _interval(book, symbol, fills)
    i = j = 0
    buy_left = sell_left = None  # what the current buy (sell) may still take: open lots within its cap
    while i < len(buys) and j < len(sells):
        buy, sell = buys[i], sells[j]
        if buy.price < sell.price or (low is not None and buy.price < low) or (high is not None and sell.price > high):
            return added
        if buy_left is None:
            buy_left = _open_within_cap(head, buy, fills)
        if buy_left <= 0:
            i, buy_left = i + 1, None
            continue
        if sell_left is None:
            sell_left = _open_within_cap(head, sell, fills)
        if sell_left <= 0:
            j, sell_left = j + 1, None
            continue
        take = min(buy_left, sell_left)
        same = book.orders[buy.id].client == book.orders[sell.id].client
        if same:
            take = head.largest([(buy.id, 1), (sell.id, 1)], take)
            if take == 0:  # the pair does not fit together: the later of the two steps aside
                if priority_key(buy)[1:] > priority_key(sell)[1:]:
                    i, buy_left = i + 1, None
                else:
                    j, sell_left = j + 1, None
                continue
        for order in (buy, sell):
            fills[order.id] = fills.get(order.id, 0) + take
            head.add(order.id, take)
        added = True
        # Along one order's fill the allowed lots are an interval from 0: its cap falls by what it took,
        # unless the same client's other order moved too.
        buy_left, sell_left = (None, None) if same else (buy_left - take, sell_left - take)
        low = sell.price if low is None else max(low, sell.price)
        high = buy.price if high is None else min(high, buy.price)
    return added


def _open_within_cap(head: Headroom, order: LotOrder, fills: dict[str, int]) -> int:
    """The order's lots still open, at most what its client can still afford (``Headroom.cap``)."""
    left = order.lots - fills.get(order.id, 0)
    return min(left, head.cap(order.id)) if left > 0 else left


def _prioritise(book: _Book, head: Headroom, symbol: str, fills: dict[str, int]) -> bool:
    """Price-time priority among the filled: on each side of a contract, lots move from the last filled
    order (worst price, then latest) to the first order with room (best price, then earliest) while both
    clients' collateral allows. Welfare never falls (the taker's limit is at least as good), the volume
    per side stays, and the prices every fill allows only widen. A move changes two clients' collateral,
    which may open a move a sweep passed by (on either side): the sides are swept again until a sweep of
    each moves nothing, and such a sweep leaves no pair that could move (``_priority_sweep``). In place;
    whether anything moved."""
    sides = _sides(book, symbol)
    moved = False
    clean = [False, False]  # whether a sweep of that side moved nothing since the last move anywhere
    k = 0
    while not (clean[0] and clean[1]):
        if not clean[k]:
            if _priority_sweep(book, head, sides[k], fills):
                moved = True
                clean = [False, False]
            else:
                clean[k] = True
        k = 1 - k
    return moved


def _priority_sweep(book: _Book, head: Headroom, orders: list[LotOrder], fills: dict[str, int]) -> bool:
    """One sweep of ``_prioritise`` over one side (``orders`` in priority order): the first order with room
    takes from the last filled one. An order set aside for the other clients' orders (the taker cannot
    afford a lot more, the giver cannot give one up) is first tried with its own client's orders across
    the two pointers, and a giver its own client's taker cannot take from (a better limit costs more) with
    the other takers: so a sweep that moves nothing has tried every pair. Whether anything moved."""
    moved = False
    own: dict[str, list[int]] | None = None  # client -> the indices of its orders on this side, when needed

    def client(order: LotOrder) -> str:
        return book.orders[order.id].client

    def mine(order: LotOrder) -> list[int]:
        nonlocal own
        if own is None:
            own = defaultdict(list)
            for index, other in enumerate(orders):
                own[client(other)].append(index)
        return own[client(order)]

    def first_move(pairs: Iterable[tuple[LotOrder, LotOrder]]) -> tuple[LotOrder, LotOrder, int] | None:
        for taker, giver in pairs:
            if lots := movable(taker, giver):
                return taker, giver, lots
        return None

    def movable(taker: LotOrder, giver: LotOrder) -> int:
        most = min(taker.lots - fills.get(taker.id, 0), fills.get(giver.id, 0))
        if most <= 0:
            return 0
        if client(taker) == client(giver):
            # One client's own orders: the lot leaves one as it enters the other (at one limit price its cost
            # is the same, so a client at its budget can still move it): only the pair's move is checked.
            changes = [(taker.id, 1), (giver.id, -1)]
            return head.largest(changes, most) if head.largest(changes, 1) else 0
        return min(most, head.cap(taker.id), head.cap(giver.id, -1))

    def move(taker: LotOrder, giver: LotOrder, lots: int) -> None:
        fills[taker.id] = fills.get(taker.id, 0) + lots
        fills[giver.id] -= lots
        head.add(taker.id, lots)
        head.add(giver.id, -lots)
        if not fills[giver.id]:
            del fills[giver.id]

    first, last = 0, len(orders) - 1
    capped = None  # (first, the taker's room within its cap): the same until a move or the next taker
    while first < last:
        taker, giver = orders[first], orders[last]
        room = taker.lots - fills.get(taker.id, 0)
        if room <= 0:  # the first orders are filled already
            first += 1
            continue
        if capped is None or capped[0] != first:
            capped = first, min(room, head.cap(taker.id))
        given = fills.get(giver.id, 0)
        if given <= 0 and capped[1] > 0:  # most steps: the taker has room, the last orders are not filled
            last -= 1
            continue
        found = None  # (taker, giver, lots)
        if client(taker) != client(giver):
            if capped[1] <= 0:
                # No other client's lot: the taker's own later orders may still give it one.
                found = first_move((taker, orders[i]) for i in reversed(mine(taker)) if first < i <= last)
                if found is None:
                    first += 1
                    continue
            elif (lots := min(capped[1], given, head.cap(giver.id, -1))) > 0:
                found = taker, giver, lots
            else:
                # The giver can give no other client a lot: its own client's earlier orders may take one.
                found = first_move((orders[i], giver) for i in mine(giver) if first <= i < last)
        elif given > 0 and (found := first_move([(taker, giver)])) is None:
            # Its own client's first order cannot take it (a better limit costs more): the next takers may, other
            # clients' only if the giver can give a lot up.
            later = range(first + 1, last) if head.cap(giver.id, -1) > 0 else (
                i for i in mine(giver) if first < i < last)
            found = first_move((orders[i], giver) for i in later)
        if found is None:
            last -= 1
            continue
        move(*found)
        moved, capped = True, None
    return moved


def _grid_bound(book: _Book, symbols: list[str], bound: float) -> Decimal:
    """A solver's bound on the welfare of ``symbols`` as a Decimal, down to the grid every welfare lies on:
    each fill adds lots x limit x lot size, a multiple of tick x lot size, so every welfare is a multiple
    of q, the greatest common divisor of those. The float's own error (relative 1e-9, HiGHS' tolerances
    are tighter) is added first, so the result stays a bound."""
    steps = [book.contracts[s].tick * book.contracts[s].lot for s in symbols]
    exponent = min(step.as_tuple().exponent for step in steps)
    quantum = Decimal(functools.reduce(math.gcd, (int(step.scaleb(-exponent)) for step in steps))).scaleb(exponent)
    loose = Decimal(repr(bound)) + Decimal("1e-9") * max(Decimal(1), abs(Decimal(repr(bound))))
    return (loose / quantum).to_integral_value(ROUND_FLOOR) * quantum


def _finish(book: _Book, symbols: list[str], name: str, fills: dict[str, int], terminations: dict[str, str]
            ) -> tuple[str, dict[str, int] | None, Decimal, Headroom | None]:
    """An answer repaired: refused (fills None) when a client is over budget or a contract has no uniform
    price (a solver's floats); else the crossing orders left open filled within collateral and prices,
    then price-time priority among the filled (``_walk``, ``_prioritise``). (name, fills, welfare, state)."""
    head = _headroom(book)
    fills = dict(fills)
    for order_id, lots in fills.items():
        head.add(order_id, lots)
    intervals = _intervals(book, fills)
    if problem := _unfit(book, head, fills, intervals):
        terminations[f"{name}_rejected"] = problem
        return name, None, Decimal(0), None
    for symbol in symbols:
        # A contract's walk and priority moves fill its own orders only: its interval is still the one above.
        _walk(book, head, symbol, fills, intervals.get(symbol, (None, None)))
        # A walk's fills change their clients' collateral, which may open a priority move: until neither changes.
        while _prioritise(book, head, symbol, fills) and _walk(book, head, symbol, fills):
            pass
    return name, fills, _uncross_welfare(book, fills), head


class _Solver:
    """The coupled contracts through the model: LP relaxation (certified bound, prices), the MIP at those
    prices, and the exact price-choice MIP. Work limits (``AuctionSettings``) stop each stage; the wall
    clock only as a guard (``deadline``): no stage starts after it, and a stage it stops says
    ``maxTimeLimit`` in ``terminations``."""

    def __init__(self, book: _Book, symbols: list[str], timings: dict[str, float], terminations: dict[str, str],
                 deadline: float) -> None:
        self.book, self.symbols, self.timings, self.terminations, self.deadline = (
            book, symbols, timings, terminations, deadline)
        self.bound: float | None = None  # on the coupled contracts' welfare, once the LP is optimal
        self.lots: list[float] | None = None

    def _late(self, stage: str) -> bool:
        if time.perf_counter() >= self.deadline:
            self.terminations[stage] = "maxTimeLimit"
            return True
        return False

    def lp_and_mip(self, before_mip: Callable[[], None]) -> dict[str, int] | None:
        """The LP relaxation, then the MIP at its prices; ``before_mip`` is called as the MIP starts."""
        book, symbols = self.book, self.symbols
        started = time.perf_counter()
        self.columns, clients = _columns(book, symbols)
        self.model = AuctionModel(self.columns, len(symbols), clients, book.auction.settings)
        self.timings["build_s"] = time.perf_counter() - started
        if self._late("lp"):
            return None
        started = time.perf_counter()
        relaxed = self.model.solve_relaxation(self.deadline - started)
        self.terminations["lp"] = relaxed.termination
        self.timings["lp_s"] = time.perf_counter() - started
        if relaxed.lots is None:
            return None
        self.bound = relaxed.bound
        prices = [abs(d) / float(book.contracts[symbols[j]].lot) for j, d in enumerate(relaxed.duals)]
        eligible = []
        for column in self.columns:
            price, limit = prices[column.contract], float(column.price)
            slack = _PRICE_TOLERANCE * max(1.0, price)
            eligible.append(limit >= price - slack if column.side > 0 else limit <= price + slack)
        if self._late("mip"):
            return None
        before_mip()
        started = time.perf_counter()
        solved = self.model.solve_integer(eligible, self.deadline - started)
        self.terminations["mip"] = solved.termination
        self.timings["mip_s"] = time.perf_counter() - started
        if solved.lots is None:
            return None
        return _fills_from_columns(book, self.columns, solved.lots)

    def price_choice(self, start: dict[str, int]) -> dict[str, int] | None:
        """The exact stage, warm-started from ``start`` (fills with a uniform price per contract)."""
        if self._late("exact"):
            return None
        started = time.perf_counter()
        lots = [float(sum(start.get(i, 0) for i in column.order_ids)) for column in self.columns]
        exact = self.model.solve_price_consistent(lots, self.deadline - started)
        self.terminations["exact"] = exact.termination
        self.timings["exact_s"] = time.perf_counter() - started
        if exact.bound is not None:  # the MIP's own bound is at least as tight as the LP's
            self.bound = min(self.bound, exact.bound)
        if exact.lots is None:
            return None
        return _fills_from_columns(self.book, self.columns, exact.lots)


def _fallback(book: _Book, timings: dict[str, float], started: float, reason: str = "") -> AuctionResult:
    """Uncross every contract among clients whose collateral cannot bind: always feasible."""
    fills = _uncross_contracts(book, sorted(book.by_contract), with_binding=False)
    everything = _uncross_contracts(book, sorted(book.by_contract), with_binding=True)
    timings["total_s"] = time.perf_counter() - started
    method = "fallback-uncross" + (f" ({reason})" if reason else "")
    # Without collateral limits the uncross is the welfare optimum: a certified upper bound.
    head = _headroom(book)
    for order_id, lots in fills.items():
        head.add(order_id, lots)
    return _result(book, fills, _uncross_welfare(book, everything), "fallback", method, timings, head=head)
