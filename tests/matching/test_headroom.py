"""The headroom's closed form (the most lots one order's fill may grow or shrink by) against the engine's
own exact collateral rule (``client_cost``) tried lot by lot, on small random books and fills."""

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccp.matching.engine import _headroom, _prepare, client_cost
from tests.matching.test_engine_bruteforce import books


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
          derandomize=True)
@given(books(), st.data())
def test_the_cap_is_the_most_lots_the_budget_allows(auction, data):
    book = _prepare(auction)
    fills = {o.id: data.draw(st.integers(0, int(o.quantity))) for o in auction.orders}
    head = _headroom(book)
    for order_id, lots in fills.items():
        head.add(order_id, lots)

    def fits(client_id, trial):
        return client_cost(book, client_id, {i: D(q) for i, q in trial.items()}) <= book.clients[client_id].budget

    for order in auction.orders:
        if order.client not in book.binding:
            continue
        assert head.fits(order.client) == fits(order.client, fills)
        if not fits(order.client, fills):
            continue
        for direction, room in ((1, int(order.quantity) - fills[order.id]), (-1, fills[order.id])):
            expected = 0
            for k in range(1, room + 1):
                if not fits(order.client, {**fills, order.id: fills[order.id] + direction * k}):
                    break
                expected = k
            assert min(head.cap(order.id, direction), room) == expected
