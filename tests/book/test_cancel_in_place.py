"""Cancels in the middle of a level: the engine marks the order dead in place instead of searching its level, and
a modify that loses priority re-enters a copy. These cases pin what that must never change."""

from ccp.book.engine import Armed, Cancel, Cancelled, Engine, Leg, Modify, Rested, SetPrice, Submit, Trade, Triggered


def trades(events):
    return [(e.buy_order_id, e.sell_order_id, e.price, e.qty) for e in events if isinstance(e, Trade)]


def sells(engine, *specs):
    for oid, qty, px in specs:
        engine.apply(Submit(oid, "s-" + oid, "sell", qty, "limit", px))


def resting_ids(engine):
    return [o["order_id"] for o in engine.snapshot()["orders"]]


def test_an_order_cancelled_in_the_middle_of_a_level_never_trades():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100), ("d", 1, 101))
    assert engine.apply(Cancel("b", "s-b")) == [Cancelled("b", "cancelled", 1)]
    assert resting_ids(engine) == ["a", "c", "d"]
    events = engine.apply(Submit("x", "buyer", "buy", 3, "limit", 101))
    assert trades(events) == [("x", "a", 100, 1), ("x", "c", 100, 1), ("x", "d", 101, 1)]
    assert engine.best("sell") is None and engine.orders == {}


def test_a_level_emptied_by_cancels_in_any_order_disappears_from_best():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100), ("d", 1, 100), ("e", 2, 101))
    for oid in ("b", "c", "d"):  # middle, middle, back: b and c stay behind as dead entries
        engine.apply(Cancel(oid, "s-" + oid))
        assert engine.best("sell") == 100
    engine.apply(Cancel("a", "s-a"))  # the last live order of the level, at its front
    assert engine.best("sell") == 101
    assert resting_ids(engine) == ["e"]
    # The price is a fresh level afterwards: a new order there rests alone and trades first.
    sells(engine, ("f", 1, 100))
    events = engine.apply(Submit("x", "buyer", "buy", 2, "limit", 101))
    assert trades(events) == [("x", "f", 100, 1), ("x", "e", 101, 1)]


def test_a_level_behind_a_dead_front_is_matched_after_the_front_is_cancelled():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100))
    engine.apply(Cancel("b", "s-b"))
    engine.apply(Cancel("a", "s-a"))  # a leaves; the dead b behind it must not become the front
    assert engine.best("sell") == 100
    events = engine.apply(Submit("x", "buyer", "buy", 5, "limit", 100))
    assert trades(events) == [("x", "c", 100, 1)]
    assert events[-1] == Rested("x", 100, 4)
    assert engine.best("sell") is None and engine.best("buy") == 100


def test_a_modify_that_loses_priority_leaves_no_live_trace_at_its_old_place():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100))
    engine.apply(Modify("b", "s-b", qty=2))  # a size increase: b goes behind c at the same price
    assert resting_ids(engine) == ["a", "c", "b"]
    events = engine.apply(Submit("x", "buyer", "buy", 2, "limit", 100))
    assert trades(events) == [("x", "a", 100, 1), ("x", "c", 100, 1)]
    events = engine.apply(Submit("y", "buyer", "buy", 3, "limit", 100))
    assert trades(events) == [("y", "b", 100, 2)]
    assert engine.best("sell") is None


def test_a_moved_order_cancelled_again_leaves_its_level_empty():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100))
    engine.apply(Modify("b", "s-b", price=101))
    engine.apply(Cancel("b", "s-b"))
    engine.apply(Cancel("a", "s-a"))
    engine.apply(Cancel("c", "s-c"))
    assert engine.best("sell") is None and resting_ids(engine) == []


def test_fill_or_kill_neither_counts_nor_meets_a_cancelled_order():
    engine = Engine()
    sells(engine, ("a", 2, 100))
    engine.apply(Submit("own", "buyer", "sell", 2, "limit", 100))  # the buyer's own order, cancelled below
    sells(engine, ("c", 2, 100))
    engine.apply(Cancel("own", "buyer"))
    events = engine.apply(Submit("x", "buyer", "buy", 5, "limit", 100, "fok"))
    assert [(e.order_id, e.reason) for e in events] == [("x", "fok_not_fillable")]
    # A cancelled order of the buyer's own is no self-trade: the 4 live lots fill.
    assert trades(engine.apply(Submit("y", "buyer", "buy", 4, "limit", 100, "fok"))) == [
        ("y", "a", 100, 2), ("y", "c", 100, 2)]


def test_a_snapshot_taken_with_dead_entries_rebuilds_the_same_book():
    engine = Engine()
    sells(engine, ("a", 1, 100), ("b", 1, 100), ("c", 1, 100), ("d", 1, 100))
    engine.apply(Cancel("c", "s-c"))
    engine.apply(Modify("a", "s-a", qty=3))
    rebuilt = Engine.from_snapshot(engine.snapshot())
    assert rebuilt.snapshot() == engine.snapshot()
    buy = Submit("x", "buyer", "buy", 9, "limit", 100)
    assert engine.apply(buy) == rebuilt.apply(buy)
    assert trades(rebuilt.apply(Submit("y", "buyer", "buy", 1, "limit", 100))) == []


def test_a_leg_firing_ends_the_pair_for_an_entry_that_was_moved_by_a_modify():
    engine = Engine()
    sells(engine, ("a", 2, 100))
    engine.apply(Submit("bid", "s-bid", "buy", 5, "limit", 94))
    engine.apply(Submit("e", "u", "buy", 5, "limit", 100, tp=Leg(110, protection_px=100),
                        sl=Leg(95, "mark", protection_px=90)))
    engine.apply(Modify("e", "u", price=99))  # loses priority: the entry re-enters the book
    events = engine.apply(SetPrice("mark", 95))
    assert [e.trigger_id for e in events if isinstance(e, Triggered)] == ["e:sl"]
    assert Cancelled("e:tp", "oco_sibling_triggered", 2) in events
    assert [o["legs_done"] for o in engine.snapshot()["orders"] if o["order_id"] == "e"] == [True]
    events = engine.apply(Submit("c", "s-c", "sell", 3, "limit", 99))
    assert trades(events) == [("e", "c", 99, 3)]
    assert not [e for e in events if isinstance(e, Armed)] and engine.triggers == {}


def test_orders_cancelled_behind_a_front_that_never_leaves_do_not_pile_up():
    engine = Engine()
    sells(engine, ("front", 1, 100), ("x0", 1, 100))
    for n in range(3000):  # each cancel is in the middle of the level: "front" before it, the next order after
        sells(engine, (f"x{n + 1}", 1, 100))
        engine.apply(Cancel(f"x{n}", f"s-x{n}"))
    assert len(engine._levels[-1][100]) < 1100  # dead entries are compacted away, not kept for ever
    events = engine.apply(Submit("t", "buyer", "buy", 5, "limit", 100))
    assert trades(events) == [("t", "front", 100, 1), ("t", "x3000", 100, 1)]
