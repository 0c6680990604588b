"""Pairing an auction's per-order fills into trades: each order's trades sum to its fill."""

from collections import defaultdict
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccp.clearing.pairing import Fill, Pair, fills_pair

lots = st.integers(min_value=1, max_value=500).map(lambda n: D(n) / 100)


@st.composite
def balanced_fills(draw) -> list[Fill]:
    """Buys and sells of one contract whose totals agree (the last sell takes the difference)."""
    buys = draw(st.lists(lots, min_size=1, max_size=12))
    sells = draw(st.lists(lots, min_size=0, max_size=11))
    rest = sum(buys) - sum(sells)
    if rest < 0:
        buys.append(-rest)
    elif rest > 0:
        sells.append(rest)
    ids = draw(st.permutations(range(1, len(buys) + len(sells) + 1)))
    return [Fill(i, "buy", q) for i, q in zip(ids, buys, strict=False)] + [
        Fill(i, "sell", q) for i, q in zip(ids[len(buys):], sells, strict=True)]


@given(balanced_fills())
def test_every_orders_trades_sum_to_its_fill(fills):
    pairs = fills_pair(fills)
    traded: dict[int, D] = defaultdict(D)
    for pair in pairs:
        assert pair.quantity > 0
        traded[pair.buy_order_id] += pair.quantity
        traded[pair.sell_order_id] += pair.quantity
    assert traded == {f.order_id: f.quantity for f in fills}
    assert len(pairs) <= len(fills) - 1
    assert fills_pair(list(reversed(fills))) == pairs  # deterministic: the input order does not matter


def test_fills_meet_by_order_id():
    # given two buys and two sells
    fills = [Fill(4, "sell", D("0.3")), Fill(2, "buy", D("0.5")), Fill(1, "sell", D("0.4")), Fill(3, "buy", D("0.2"))]
    # when paired: oldest buy with oldest sell, and on
    assert fills_pair(fills) == [Pair(2, 1, D("0.4")), Pair(2, 4, D("0.1")), Pair(3, 4, D("0.2"))]


def test_unbalanced_fills_are_refused():
    with pytest.raises(ValueError):
        fills_pair([Fill(1, "buy", D("1")), Fill(2, "sell", D("0.5"))])
    with pytest.raises(ValueError):
        fills_pair([Fill(1, "buy", D("0")), Fill(2, "sell", D("0"))])
