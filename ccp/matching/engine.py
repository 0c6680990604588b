"""Clear one batch auction: uniform price per contract, welfare-maximising, collateral-feasible,
deterministic. Pure: takes an AuctionInput, returns an AuctionResult; floats only inside the solver.

1. Reduce. A client whose collateral cannot bind even if all its orders fill (its current lockups
   plus every order's worst case fit its budget; lockups are subadditive) needs no collateral row,
   and its orders at one price share a column. Contracts that no binding client trades are cleared
   exactly by the price-time uncross, without a solver.
2. The other contracts go to the Pyomo model (``model.py``): its LP relaxation gives the certified
   upper bound on welfare and, from the balance rows' duals, a price per contract; the MIP then
   fills whole lots, only of orders in the money at those prices (buys at or above, sells at or
   below), so one uniform price fits every fill.
3. Merged columns are shared by time priority; each contract's price comes from its fills by the
   rule in ``uncross.clearing_price``.
4. Every result is checked in Decimal (balance, limits, lots, every client's collateral). If the
   solver fails, runs out of time without a solution, or the check fails, the fallback clears each
   contract by the uncross among clients whose collateral cannot bind: still collateral-feasible.
"""

from __future__ import annotations

import functools
import operator
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib.metadata import version

from ccp.contracts.payoffs import Leg, kink_points, lockup_amount, order_worst_cost, payoff_per_unit, premium_per_unit
from ccp.matching.auction import AuctionInput, AuctionResult, ClientSpec, ContractSpec, Fill, OrderSpec
from ccp.matching.model import AuctionModel, BindingClient, Column
from ccp.matching.uncross import LotOrder, allocate_by_priority, clearing_price, uncross
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
    by_contract: dict[str, list[str]]
    binding: set[str]  # client ids whose collateral can bind
    underwater: set[str]  # clients whose budget does not even cover their current lockups


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
    premiums = Decimal(0)
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    for order_id, qty in fills.items():
        order = book.orders[order_id]
        if order.client != client_id or not qty:
            continue
        sign = 1 if order.side == "buy" else -1
        premiums += sign * premium_per_unit(book.contracts[order.contract].terms, order.price) * qty
        deltas[order.contract] += sign * qty
    legs = _portfolio_legs(book, client_id, deltas)
    return premiums + sum((lockup_amount(portfolio) for portfolio in legs.values()), Decimal(0))


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
        fills.update(uncross(book.lot_orders[i] for i in book.by_contract[symbol]
                             if not left_out or book.orders[i].client not in left_out))
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
    trading = {book.orders[i].client for s in symbols for i in book.by_contract[s]}
    binding_ids = sorted(book.binding & trading)
    client_index = {c: k for k, c in enumerate(binding_ids)}
    for j, symbol in enumerate(symbols):
        contract = book.contracts[symbol]
        for order_id in book.by_contract[symbol]:
            order = book.orders[order_id]
            if not _tradeable(book, order_id, with_binding=True):
                continue
            side = 1 if order.side == "buy" else -1
            lots = book.lot_orders[order_id].lots
            if order.client in client_index:
                columns.append(Column(j, side, order.price, lots, contract.lot, client_index[order.client], [order_id]))
                continue
            key = (j, side, order.price)
            if key not in merged:
                merged[key] = len(columns)
                columns.append(Column(j, side, order.price, 0, contract.lot))
            column = columns[merged[key]]
            column.lots += lots
            column.order_ids.append(order_id)
    by_client: dict[int, list[int]] = defaultdict(list)
    for i, column in enumerate(columns):
        if column.client is not None:
            by_client[column.client].append(i)
    clients = []
    for client_id in binding_ids:
        mine = by_client[client_index[client_id]]
        budget = book.clients[client_id].budget
        premium = {i: float(columns[i].side * premium_per_unit(book.contracts[symbols[columns[i].contract]].terms,
                                                               columns[i].price) * columns[i].lot) for i in mine}
        positions = _portfolio_legs(book, client_id)
        portfolios = sorted(set(positions) | {book.contracts[symbols[columns[i].contract]].portfolio for i in mine})
        rows: dict[str, list[tuple[float, dict[int, float]]]] = {}
        for portfolio in portfolios:
            cols = [i for i in mine if book.contracts[symbols[columns[i].contract]].portfolio == portfolio]
            legs = positions.get(portfolio, []) + [
                Leg(book.contracts[symbols[columns[i].contract]].terms, Decimal(1)) for i in cols]
            rows[portfolio] = []
            for point in kink_points(legs):
                held = sum((leg.qty * payoff_per_unit(leg.terms, point) for leg in positions.get(portfolio, [])),
                           Decimal(0))
                coefs = {i: float(columns[i].side * columns[i].lot *
                                  payoff_per_unit(book.contracts[symbols[columns[i].contract]].terms, point))
                         for i in cols}
                rows[portfolio].append((float(-held), coefs))
        clients.append(BindingClient(float(budget), rows, premium))
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
            timings: dict[str, float], welfare: Decimal | None = None) -> AuctionResult:
    """The result of ``fills``; ``welfare``: their ``_uncross_welfare`` when the caller has it."""
    prices = {}
    for symbol, order_ids in book.by_contract.items():
        contract = book.contracts[symbol]
        price = clearing_price([book.lot_orders[i] for i in order_ids], fills, contract.tick,
                               contract.reference_price)
        if price is not None:
            prices[symbol] = price
    fill_rows = tuple(
        Fill(order_id, lots * book.contracts[book.orders[order_id].contract].lot,
             prices[book.orders[order_id].contract])
        for order_id, lots in sorted(fills.items(), key=lambda item: _id_key(item[0])) if lots > 0)
    if welfare is None:
        welfare = _uncross_welfare(book, fills)
    return AuctionResult(prices=prices, fills=fill_rows, welfare=welfare, upper_bound=max(bound, welfare),
                         status=status, method=method, solver=SOLVER, binding_clients=tuple(sorted(book.binding)),
                         timings=timings)


def _id_key(order_id: str) -> tuple:
    return (0, int(order_id), "") if order_id.isdigit() else (1, 0, order_id)


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
    for client_id, fills in sorted(by_client.items()):
        if client_id in book.underwater:
            return f"client {client_id} is under water and must not trade"
        if not everyone and client_id not in book.binding:
            continue  # its budget covers all its orders filled at once (lockups are subadditive)
        budget = book.clients[client_id].budget
        if (cost := client_cost(book, client_id, fills)) > budget:
            return f"client {client_id}: collateral {cost} over budget {budget}"
    return None


@gc_paused
def clear(auction: AuctionInput) -> AuctionResult:
    """Clear an auction. Deterministic: the same input gives the same fills and prices."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    book = _prepare(auction)
    coupled = sorted({o.contract for o in book.orders.values() if o.client in book.binding}) if book.binding else []
    free = sorted(set(book.by_contract) - set(coupled))
    fills = _uncross_contracts(book, free, with_binding=True)
    bound = _uncross_welfare(book, fills)
    timings["reduce_s"] = time.perf_counter() - started
    status, method = "optimal", "uncross"
    if coupled:
        solved = _solve_coupled(book, coupled, timings)
        if solved is None:
            return _fallback(book, timings, started)
        coupled_fills, coupled_bound = solved
        fills.update(coupled_fills)
        bound += coupled_bound
        method = "lp-prices+mip"
    # Without a coupled contract the bound is the uncross welfare of these very fills.
    result = _result(book, fills, bound, status, method, timings, welfare=None if coupled else bound)
    # Proven optimal when the welfare reaches the LP bound (to the solver's tolerance).
    if result.upper_bound - result.welfare > _OPTIMALITY_TOLERANCE * max(Decimal(1), abs(result.upper_bound)):
        result = replace(result, status="feasible")
    if problem := verify(book, result, everyone=False):
        timings["rejected_solution"] = 1.0
        return _fallback(book, timings, started, reason=problem)
    timings["total_s"] = time.perf_counter() - started
    return result


def _solve_coupled(book: _Book, symbols: list[str], timings: dict[str, float]):
    begun = started = time.perf_counter()
    columns, clients = _columns(book, symbols)
    settings = book.auction.settings
    model = AuctionModel(columns, len(symbols), clients, float(settings.time_limit_s), float(settings.mip_rel_gap))
    timings["build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    relaxed = model.solve_relaxation()
    timings["lp_s"] = time.perf_counter() - started
    if relaxed.lots is None:
        return None
    bound = Decimal(repr(relaxed.bound))
    prices = [abs(d) / float(book.contracts[symbols[j]].lot) for j, d in enumerate(relaxed.duals)]
    eligible = []
    for column in columns:
        price, limit = prices[column.contract], float(column.price)
        slack = _PRICE_TOLERANCE * max(1.0, price)
        eligible.append(limit >= price - slack if column.side > 0 else limit <= price + slack)
    started = time.perf_counter()
    solved = model.solve_integer(eligible)
    timings["mip_s"] = time.perf_counter() - started
    if solved.lots is None:
        return None
    if solved.objective < relaxed.bound - float(_OPTIMALITY_TOLERANCE) * max(1.0, abs(relaxed.bound)):
        # Below the bound: search all price choices, starting from this solution.
        left = float(settings.time_limit_s) - (time.perf_counter() - begun)
        if left > 0:
            started = time.perf_counter()
            exact = model.solve_price_consistent(solved.lots, left)
            timings["exact_s"] = time.perf_counter() - started
            if exact.bound is not None:  # the MIP's own bound is at least as tight as the LP's
                bound = min(bound, Decimal(repr(exact.bound)))
            if exact.lots is not None and exact.objective >= solved.objective:
                solved = exact
    return _fills_from_columns(book, columns, solved.lots), bound


def _fallback(book: _Book, timings: dict[str, float], started: float, reason: str = "") -> AuctionResult:
    """Uncross every contract among clients whose collateral cannot bind: always feasible."""
    fills = _uncross_contracts(book, sorted(book.by_contract), with_binding=False)
    everything = _uncross_contracts(book, sorted(book.by_contract), with_binding=True)
    timings["total_s"] = time.perf_counter() - started
    method = "fallback-uncross" + (f" ({reason})" if reason else "")
    # Without collateral limits the uncross is the welfare optimum: a certified upper bound.
    return _result(book, fills, _uncross_welfare(book, everything), "fallback", method, timings)
