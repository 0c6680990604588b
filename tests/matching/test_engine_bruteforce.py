"""The engine's welfare equals a brute-force optimum on small random books.

The brute force enumerates every fill vector in whole lots and keeps those a CCP may produce:
bought = sold per contract, one uniform price inside every filled limit, every client's collateral
within its budget. Its best welfare must equal the engine's.
"""

import itertools
from collections import defaultdict
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccp.contracts.payoffs import ContractKind, Terms
from ccp.matching.auction import AuctionInput, ClientSpec, ContractSpec, OrderSpec
from ccp.matching.engine import _prepare, clear, client_cost, verify

CONTRACTS = (
    ContractSpec("C100", Terms(ContractKind.CALL, D(50), D(150), D(100)), D(1), D(1), "P"),
    ContractSpec("P100", Terms(ContractKind.PUT, D(50), D(150), D(100)), D(1), D(1), "P"),
    ContractSpec("F", Terms(ContractKind.FUTURE, D(50), D(150)), D(1), D(1), "P", D(100)),
)
PRICES = {"C100": (0, 50), "P100": (0, 50), "F": (50, 150)}


@st.composite
def books(draw):
    contracts = CONTRACTS[: draw(st.integers(1, 3))]
    clients = []
    for k in range(draw(st.integers(2, 3))):
        positions = {c.symbol: D(draw(st.integers(-2, 2))) for c in contracts if draw(st.booleans())}
        clients.append(ClientSpec(f"c{k}", D(draw(st.integers(0, 120))), {s: q for s, q in positions.items() if q}))
    orders = []
    for n in range(draw(st.integers(2, 6))):
        contract = draw(st.sampled_from(contracts))
        low, high = PRICES[contract.symbol]
        orders.append(OrderSpec(str(n + 1), draw(st.sampled_from(clients)).id, contract.symbol,
                                draw(st.sampled_from(["buy", "sell"])), D(draw(st.integers(low, high))),
                                D(draw(st.integers(1, 3))), n + 1))
    return AuctionInput(tuple(contracts), tuple(clients), tuple(orders))


def brute_force_welfare(auction: AuctionInput) -> D:
    book = _prepare(auction)
    orders = auction.orders
    best = D(0)
    for lots in itertools.product(*(range(int(o.quantity) + 1) for o in orders)):
        volume, low, high = defaultdict(int), defaultdict(lambda: D(-1)), defaultdict(lambda: D(10**9))
        for order, q in zip(orders, lots, strict=True):
            if q:
                volume[order.contract] += q if order.side == "buy" else -q
                if order.side == "sell":
                    low[order.contract] = max(low[order.contract], order.price)
                else:
                    high[order.contract] = min(high[order.contract], order.price)
        if any(volume.values()) or any(low[s] > high[s] for s in low if s in high):
            continue
        fills = {o.id: D(q) for o, q in zip(orders, lots, strict=True) if q}
        if any(o.client in book.underwater for o in orders if o.id in fills):
            continue
        if any(client_cost(book, c.id, fills) > c.budget for c in auction.clients if c.id not in book.underwater
               and any(o.client == c.id for o in orders if o.id in fills)):
            continue
        welfare = sum(((1 if o.side == "buy" else -1) * o.price * fills[o.id] for o in orders if o.id in fills), D(0))
        best = max(best, welfare)
    return best


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
          derandomize=True)
@given(books())
def test_welfare_equals_the_brute_force_optimum(auction):
    result = clear(auction)
    assert verify(_prepare(auction), result) is None
    assert result.welfare == brute_force_welfare(auction)
    assert result.welfare <= result.upper_bound
