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
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version

from ccp.contracts.payoffs import Leg, kink_points, lockup_amount, order_worst_cost, payoff_per_unit, premium_per_unit
from ccp.matching.auction import AuctionInput, AuctionResult, ClientSpec, ContractSpec, Fill, OrderSpec, order_id_key
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
                reasons[order.id] = _reason(order, price, cap(order))
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


def _reason(order: LotOrder, price: Decimal | None, cap: int) -> str:
    """Why an order is (partly) open: its limit is outside the price (or nothing crossing it traded and
    it could afford a lot), its collateral allows no further lot, or the volume went to orders ahead of
    it (time priority at the margin, or the other side's collateral)."""
    if price is None:
        return "collateral" if cap == 0 else "limit"
    if (order.side == "buy" and order.price < price) or (order.side == "sell" and order.price > price):
        return "limit"
    return "collateral" if cap == 0 else "priority"


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
    solved = _solve_coupled(book, coupled, timings, terminations, deadline)
    started_fallback = time.perf_counter()
    # The fallback: the collateral-capped price-time uncross, and the uncross of the clients that cannot
    # bind (always feasible); the better of the two after the repair.
    fallbacks = [("greedy", _greedy(book, coupled)), ("fallback-uncross", _uncross_contracts(book, coupled, False))]
    mip_fills, lp_bound = solved
    candidates: list[tuple[str, dict[str, int]]] = ([("lp-prices+mip", mip_fills)] if mip_fills else []) + fallbacks
    finished = []
    for name, candidate in candidates:
        head = _headroom(book)
        candidate = dict(candidate)
        for order_id, lots in candidate.items():
            head.add(order_id, lots)
        if problem := _unfit(book, head, candidate):
            terminations[f"{name}_rejected"] = problem
            continue
        for symbol in coupled:
            _walk(book, head, symbol, candidate)
            _prioritise(book, head, symbol, candidate)
            _walk(book, head, symbol, candidate)
        finished.append((name, candidate, _uncross_welfare(book, candidate), head))
    timings["fallback_s"] = time.perf_counter() - started_fallback
    fallback_welfare = max(w for n, _, w, _ in finished if n != "lp-prices+mip")
    # The best welfare; on a tie the first: the MIP's answer, then the greedy one.
    name, coupled_fills, coupled_welfare, head = max(finished, key=lambda f: f[2])  # max keeps the first of ties
    if lp_bound is not None:
        bound = Decimal(repr(lp_bound))
    else:
        # No LP bound: the welfare without collateral (the uncross of everyone) bounds every answer.
        bound = _uncross_welfare(book, _uncross_contracts(book, coupled, True))
    fills.update(coupled_fills)
    welfare = free_welfare + coupled_welfare
    bound = max(free_welfare + bound, welfare)
    proven = bound - welfare <= _OPTIMALITY_TOLERANCE * max(Decimal(1), abs(bound))
    status = "optimal" if proven else "feasible" if name == "lp-prices+mip" else "fallback"
    if name != "lp-prices+mip":
        why = "no MIP answer" if mip_fills is None else (
            "MIP answer rejected" if "lp-prices+mip_rejected" in terminations else "MIP answer below it")
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


def _headroom(book: _Book) -> Headroom:
    clients = {c: (book.clients[c].budget, book.clients[c].positions) for c in book.binding}
    contracts = {s: (c.terms, c.lot, c.portfolio) for s, c in book.contracts.items()}
    return Headroom(_OrderView(book), contracts, clients, barred=book.underwater)


class _OrderView:
    """order id -> (client, contract, side, limit price, lots), as ``Headroom`` reads an order."""

    def __init__(self, book: _Book) -> None:
        self.book = book

    def __getitem__(self, order_id: str) -> tuple[str, str, str, Decimal, int]:
        order = self.book.orders[order_id]
        return order.client, order.contract, order.side, order.price, self.book.lot_orders[order_id].lots


def _unfit(book: _Book, head: Headroom, fills: dict[str, int]) -> str | None:
    """Why fills a solver produced may not be kept (a client over budget, or no uniform price)."""
    for client_id in sorted({book.orders[i].client for i, lots in fills.items() if lots}):
        if client_id in book.underwater:
            return f"client {client_id} is under water"
        if not head.fits(client_id):
            return f"client {client_id} over budget"
    for symbol in sorted({book.orders[i].contract for i, lots in fills.items() if lots}):
        low, high = _interval(book, symbol, fills)
        if low is None or high is None or low > high:
            return f"{symbol}: no uniform price"
    return None


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


def _greedy(book: _Book, symbols: list[str]) -> dict[str, int]:
    """The simple clearing with collateral: each contract's price-time uncross in turn, every bound
    client's order filled by what its collateral still allows (``Headroom.cap``), skipped at 0."""
    head = _headroom(book)
    fills: dict[str, int] = {}
    for symbol in symbols:
        _walk(book, head, symbol, fills)
    return fills


def _walk(book: _Book, head: Headroom, symbol: str, fills: dict[str, int]) -> None:
    """Fill what is left of a contract's crossing orders in price-time priority (the uncross rule), within
    each client's collateral and keeping one uniform price possible: every fill added keeps the highest
    filled sell limit at or below the lowest filled buy limit. Stops at the first pair that no longer
    crosses or would leave no uniform price (the next pairs would not either). In place."""
    orders = [book.lot_orders[i] for i in book.by_contract[symbol] if book.orders[i].client not in book.underwater]
    buys, sells = by_priority(orders)
    low, high = _interval(book, symbol, fills)
    i = j = 0
    while i < len(buys) and j < len(sells):
        buy, sell = buys[i], sells[j]
        if buy.price < sell.price or (low is not None and buy.price < low) or (high is not None and sell.price > high):
            return
        buy_left = min(buy.lots - fills.get(buy.id, 0), head.cap(buy.id))
        if buy_left <= 0:
            i += 1
            continue
        sell_left = min(sell.lots - fills.get(sell.id, 0), head.cap(sell.id))
        if sell_left <= 0:
            j += 1
            continue
        take = min(buy_left, sell_left)
        if book.orders[buy.id].client == book.orders[sell.id].client:
            take = head.largest([(buy.id, 1), (sell.id, 1)], take)
            if take == 0:  # the pair does not fit together: the later of the two steps aside
                if priority_key(buy)[1:] > priority_key(sell)[1:]:
                    i += 1
                else:
                    j += 1
                continue
        for order in (buy, sell):
            fills[order.id] = fills.get(order.id, 0) + take
            head.add(order.id, take)
        low = sell.price if low is None else max(low, sell.price)
        high = buy.price if high is None else min(high, buy.price)


def _prioritise(book: _Book, head: Headroom, symbol: str, fills: dict[str, int]) -> None:
    """Price-time priority among the filled: on each side of a contract, lots move from the last filled
    order (worst price, then latest) to the first order with room (best price, then earliest) while both
    clients' collateral allows. Welfare never falls (the taker's limit is at least as good), the volume
    per side stays, and the prices every fill allows only widen. In place."""
    for side in ("buy", "sell"):
        orders = sorted((book.lot_orders[i] for i in book.by_contract[symbol]
                         if book.orders[i].side == side and book.orders[i].client not in book.underwater),
                        key=priority_key)
        first, last = 0, len(orders) - 1
        while first < last:
            taker, giver = orders[first], orders[last]
            room = min(taker.lots - fills.get(taker.id, 0), head.cap(taker.id))
            if room <= 0:
                first += 1
                continue
            given = min(fills.get(giver.id, 0), head.cap(giver.id, -1))
            if given <= 0:
                last -= 1
                continue
            move = min(room, given)
            if book.orders[taker.id].client == book.orders[giver.id].client:
                move = head.largest([(taker.id, 1), (giver.id, -1)], move)
                if move == 0:
                    last -= 1
                    continue
            fills[taker.id] = fills.get(taker.id, 0) + move
            fills[giver.id] -= move
            head.add(taker.id, move)
            head.add(giver.id, -move)
            if not fills[giver.id]:
                del fills[giver.id]


def _solve_coupled(book: _Book, symbols: list[str], timings: dict[str, float], terminations: dict[str, str],
                   deadline: float) -> tuple[dict[str, int] | None, float | None]:
    """The MIP's fills of the coupled contracts (None without an answer) and the certified bound on their
    welfare (LP relaxation, or the MIP's own when tighter; None without an optimal LP). Work limits
    (``AuctionSettings``) stop each stage; the wall clock only as a guard (``deadline``)."""
    started = time.perf_counter()
    columns, clients = _columns(book, symbols)
    settings = book.auction.settings
    model = AuctionModel(columns, len(symbols), clients, settings)
    timings["build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    if started >= deadline:  # the guard: no stage starts after the deadline
        terminations["lp"] = "maxTimeLimit"
        return None, None
    relaxed = model.solve_relaxation(deadline - started)
    terminations["lp"] = relaxed.termination
    timings["lp_s"] = time.perf_counter() - started
    if relaxed.lots is None:
        return None, None
    bound = relaxed.bound
    prices = [abs(d) / float(book.contracts[symbols[j]].lot) for j, d in enumerate(relaxed.duals)]
    eligible = []
    for column in columns:
        price, limit = prices[column.contract], float(column.price)
        slack = _PRICE_TOLERANCE * max(1.0, price)
        eligible.append(limit >= price - slack if column.side > 0 else limit <= price + slack)
    started = time.perf_counter()
    if started >= deadline:
        terminations["mip"] = "maxTimeLimit"
        return None, bound
    solved = model.solve_integer(eligible, deadline - started)
    terminations["mip"] = solved.termination
    timings["mip_s"] = time.perf_counter() - started
    if solved.lots is None:
        return None, bound
    if solved.objective < relaxed.bound - float(_OPTIMALITY_TOLERANCE) * max(1.0, abs(relaxed.bound)):
        # Below the bound: search all price choices, starting from this solution.
        started = time.perf_counter()
        if started >= deadline:
            terminations["exact"] = "maxTimeLimit"
        else:
            exact = model.solve_price_consistent(solved.lots, deadline - started)
            terminations["exact"] = exact.termination
            timings["exact_s"] = time.perf_counter() - started
            if exact.bound is not None:  # the MIP's own bound is at least as tight as the LP's
                bound = min(bound, exact.bound)
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
    head = _headroom(book)
    for order_id, lots in fills.items():
        head.add(order_id, lots)
    return _result(book, fills, _uncross_welfare(book, everything), "fallback", method, timings, head=head)
