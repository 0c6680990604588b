"""Price-time priority (``by_priority``): from orders in any order, and with one sort per side from orders in
time order already (``timed``, as the engine holds each contract's orders), the order ``priority_key`` gives."""

import operator
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.matching.uncross import LotOrder, by_priority, priority_key, uncross


@st.composite
def orders(draw):
    # few prices and priorities, ids of different lengths: ties at every level ("10" sorts before "9")
    return [LotOrder(str(draw(st.integers(1, 120))) + suffix, draw(st.sampled_from(["buy", "sell"])),
                     draw(st.integers(1, 6)) * D("0.5"), draw(st.integers(1, 5)), draw(st.integers(1, 4)))
            for suffix in map(str, range(draw(st.integers(0, 40))))]


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(orders(), st.randoms(use_true_random=False))
def test_time_ordered_orders_sort_as_any_order(book, rng):
    # Given the same orders in time order and shuffled
    timed = sorted(book, key=operator.attrgetter("priority", "id"))
    shuffled = list(book)
    rng.shuffle(shuffled)
    # Then one sort per side of the timed orders gives price-time priority, as sorting any order does
    expected = (sorted((o for o in book if o.side == "buy"), key=priority_key),
                sorted((o for o in book if o.side == "sell"), key=priority_key))
    assert by_priority(timed, timed=True) == by_priority(shuffled) == expected
    assert uncross(timed, timed=True) == uncross(shuffled)
