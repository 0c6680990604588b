"""The liquidation index finds exactly the positions a plain loop finds (``ccp.perps.index``)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.perps.index import LONG, SHORT, PriceIndex


def plain(positions, contract, mark):
    """The deliberately simple scan: walk every position."""
    longs = sorted((-t, k) for k, (c, s, t) in positions.items() if c == contract and s == LONG and t >= mark)
    shorts = sorted((t, k) for k, (c, s, t) in positions.items() if c == contract and s == SHORT and t <= mark)
    return [k for _, k in longs] + [k for _, k in shorts]  # most crossed first, ties by key ascending


def test_a_long_is_crossed_at_or_below_its_price_a_short_at_or_above():
    index = PriceIndex([(1, 7, LONG, 100), (2, 7, LONG, 90), (3, 7, SHORT, 110), (4, 7, SHORT, 120), (5, 8, LONG, 100)])
    assert index.crossed(7, 101) == []
    assert index.crossed(7, 100) == [1]
    assert index.crossed(7, 80) == [1, 2]
    both = PriceIndex([(1, 7, LONG, 130), (2, 7, LONG, 125), (3, 7, SHORT, 110), (4, 7, SHORT, 120)]).crossed(7, 121)
    assert list(both) == [1, 2, 3, 4] and len(both) == 4
    assert (both[0], both[2], both[-1], both[1:3]) == (1, 3, 4, [2, 3])
    assert index.crossed(7, 115) == [3]
    assert index.nearest(7, 105, 3) == [(1, 5), (3, 5), (2, 15)]
    index.set(1, contract=7, side=LONG, ticks=None)  # closed
    index.set(2, contract=7, side=LONG, ticks=95)  # margin added... the other way: moved
    assert index.crossed(7, 95) == [2]
    assert len(index) == 4 and 1 not in index and index.price_of(2) == 95


ops = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2), st.sampled_from([LONG, SHORT]),
                         st.one_of(st.none(), st.integers(0, 50))), max_size=120)


@settings(max_examples=300)
@given(ops=ops, marks=st.lists(st.integers(-1, 52), min_size=1, max_size=5))
def test_same_as_walking_every_position(ops, marks):
    index, positions = PriceIndex(), {}
    for key, contract, side, ticks in ops:
        index.set(key, contract=contract, side=side, ticks=ticks)
        if ticks is None:
            positions.pop(key, None)
        else:
            positions[key] = (contract, side, ticks)
    rebuilt = PriceIndex((k, c, s, t) for k, (c, s, t) in positions.items())
    for contract in range(3):
        for mark in marks:
            walked = plain(positions, contract, mark)
            assert list(index.crossed(contract, mark)) == walked
            assert list(rebuilt.crossed(contract, mark)) == walked
            assert [index.crossed(contract, mark)[i] for i in range(len(walked))] == walked
