"""The n log n clearing-price rule gives the same price as the quadratic one it replaced
(``reference_price.py``) on random books, with every open lot counted or only the affordable ones."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.matching.uncross import LotOrder, clearing_price, uncross
from tests.matching.reference_price import clearing_price_quadratic


@st.composite
def books(draw):
    tick = draw(st.sampled_from([D(1), D("0.5"), D(10)]))
    orders = [LotOrder(str(n), draw(st.sampled_from(["buy", "sell"])), draw(st.integers(1, 40)) * tick,
                       draw(st.integers(1, 6)), n) for n in range(draw(st.integers(2, 30)))]
    # fills some crossing orders can take together: the uncross of a random part of the book
    chosen = [o for o in orders if draw(st.booleans())]
    fills = uncross(chosen)
    reference = draw(st.one_of(st.none(), st.integers(0, 45).map(lambda k: k * tick)))
    affordable = {o.id: draw(st.integers(0, o.lots)) for o in orders}
    return orders, fills, tick, reference, affordable


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(books())
def test_the_same_price_as_the_quadratic_rule(book):
    orders, fills, tick, reference, affordable = book
    assert clearing_price(orders, fills, tick, reference) == clearing_price_quadratic(orders, fills, tick, reference)
    # only affordable lots: the old rule on orders cut to their fill plus what is affordable of the rest
    cut = [o._replace(lots=fills.get(o.id, 0) + min(affordable[o.id], o.lots - fills.get(o.id, 0))) for o in orders]
    assert (clearing_price(orders, fills, tick, reference, affordable=lambda o, left: min(left, affordable[o.id]))
            == clearing_price_quadratic(cut, fills, tick, reference))
