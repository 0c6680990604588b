"""Every result against the README's rules for batch auctions, checked by brute force on small random books with
binding collateral: welfare-optimal (the brute force of ``test_engine_bruteforce``); the price rule (inside every
filled limit, least unmet demand/supply counting only lots their clients can still afford, then nearest the
reference price, then the lower price); price-time priority (no lot can move to an order ahead of it at the
same or a better limit with both clients' collateral allowing it); no crossing orders of two clients left open
that could both take one more lot at a price the other fills allow; and each open order's reason."""

from collections import defaultdict
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccp.matching.auction import AuctionInput, ClientSpec, OrderSpec
from ccp.matching.engine import _prepare, clear, client_cost, verify
from ccp.matching.uncross import priority_key
from tests.matching.test_engine_bruteforce import CONTRACTS, PRICES, brute_force_welfare


@st.composite
def books(draw):
    # Few prices and priorities: ties between clients and within one client's orders at every level.
    contracts = CONTRACTS[: draw(st.integers(1, 3))]
    clients = []
    for k in range(draw(st.integers(2, 4))):
        positions = {c.symbol: D(draw(st.integers(-2, 2))) for c in contracts if draw(st.booleans())}
        clients.append(ClientSpec(f"c{k}", D(draw(st.integers(0, 150))), {s: q for s, q in positions.items() if q}))
    orders = []
    for n in range(draw(st.integers(2, 6))):
        contract = draw(st.sampled_from(contracts))
        low, high = PRICES[contract.symbol]
        middle = (low + high) // 2
        price = draw(st.sampled_from([low + 1, middle - 5, middle, middle + 5, high - 1]) | st.integers(low + 1,
                                                                                                       high - 1))
        orders.append(OrderSpec(str(n + 1), draw(st.sampled_from(clients)).id, contract.symbol,
                                draw(st.sampled_from(["buy", "sell"])), D(price), D(draw(st.integers(1, 3))),
                                draw(st.integers(1, 4))))
    return AuctionInput(tuple(contracts), tuple(clients), tuple(orders))


def _fits(book, fills):
    """Every client with fills within its budget (a client under water may not trade at all)."""
    by_client = defaultdict(dict)
    for order_id, lots in fills.items():
        if lots:
            by_client[book.orders[order_id].client][order_id] = D(lots)
    return all(client not in book.underwater and client_cost(book, client, mine) <= book.clients[client].budget
               for client, mine in by_client.items())


def _affordable(book, fills, order):
    """The order's open lots its client can still afford, one more at a time."""
    lots = 0
    while lots < int(order.quantity) - fills.get(order.id, 0) and _fits(
            book, {**fills, order.id: fills.get(order.id, 0) + lots + 1}):
        lots += 1
    return lots


def _unmet(orders, affordable, price):
    """Open lots their clients can still afford of the buys above the price and the sells below it."""
    return sum(affordable[o.id] for o in orders
               if (o.side == "buy" and o.price > price) or (o.side == "sell" and o.price < price))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
          derandomize=True)
@given(books())
def test_a_result_follows_the_documented_rules(auction):
    result = clear(auction)
    book = _prepare(auction)
    assert verify(book, result) is None
    assert result.welfare == brute_force_welfare(auction)
    fills = {f.order: int(f.quantity) for f in result.fills}
    by_contract = defaultdict(list)
    for order in auction.orders:
        by_contract[order.contract].append(order)
    for symbol, orders in by_contract.items():
        contract = book.contracts[symbol]
        filled = [o for o in orders if fills.get(o.id)]
        low = max((o.price for o in filled if o.side == "sell"), default=None)
        high = min((o.price for o in filled if o.side == "buy"), default=None)
        affordable = {o.id: _affordable(book, fills, o) for o in orders}
        price = result.prices.get(symbol)
        if not filled:
            assert price is None
        else:
            reference = contract.reference_price if contract.reference_price is not None else (low + high) / 2
            grid = [low + k * contract.tick for k in range(int((high - low) / contract.tick) + 1)]
            assert price == min(grid, key=lambda p: (_unmet(orders, affordable, p), abs(p - reference), p))
        for side in ("buy", "sell"):
            ranked = sorted((o for o in orders if o.side == side), key=lambda o: priority_key(book.lot_orders[o.id]))
            for k, ahead in enumerate(ranked):
                for behind in ranked[k + 1:]:
                    if fills.get(behind.id) and fills.get(ahead.id, 0) < int(ahead.quantity):
                        moved = {**fills, ahead.id: fills.get(ahead.id, 0) + 1, behind.id: fills[behind.id] - 1}
                        assert not _fits(book, moved), f"a lot of {behind.id} could go to {ahead.id}: {fills}"
        for buy in orders:
            for sell in orders:
                if (buy.side, sell.side) != ("buy", "sell") or buy.client == sell.client or buy.price < sell.price:
                    continue
                if fills.get(buy.id, 0) == int(buy.quantity) or fills.get(sell.id, 0) == int(sell.quantity):
                    continue
                if (low is not None and buy.price < low) or (high is not None and sell.price > high):
                    continue
                more = {**fills, buy.id: fills.get(buy.id, 0) + 1, sell.id: fills.get(sell.id, 0) + 1}
                assert not _fits(book, more), f"{buy.id} and {sell.id} cross, open: {fills}"
        for order in orders:
            if fills.get(order.id, 0) < int(order.quantity):
                if price is None:
                    reason = "limit" if affordable[order.id] else "collateral"
                elif (order.side == "buy" and order.price < price) or (order.side == "sell" and order.price > price):
                    reason = "limit"
                else:
                    reason = "priority" if affordable[order.id] else "collateral"
                assert result.reasons[order.id] == reason, order
