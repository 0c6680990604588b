"""The engine's rules, one small worked case each (prices in ticks, quantities in lots)."""

from decimal import Decimal

import pytest

from ccp.book.engine import (
    Accepted,
    Armed,
    Cancel,
    CancelAll,
    Cancelled,
    ClosePosition,
    Engine,
    Leg,
    Modified,
    Modify,
    PlaceTrigger,
    Rejected,
    Rested,
    Scale,
    SetPrice,
    Submit,
    Trade,
    Triggered,
)


def trades(events):
    return [(e.buy_order_id, e.sell_order_id, e.price, e.qty) for e in events if isinstance(e, Trade)]


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def reasons(events):
    return [(e.order_id, e.reason) for e in events if isinstance(e, (Rejected, Cancelled))]


def book(*orders, positions=None):
    engine = Engine(positions)
    for order in orders:
        engine.apply(order)
    return engine


def sell(oid, qty, px, user="s", **kw):
    return Submit(oid, user, "sell", qty, "limit", px, **kw)


def buy(oid, qty, px, user="b", **kw):
    return Submit(oid, user, "buy", qty, "limit", px, **kw)


def test_scale_converts_exactly_and_refuses_fractions_of_a_tick():
    scale = Scale(Decimal("0.01"), Decimal("0.1"))
    assert scale.ticks(Decimal("100.25")) == 10025
    assert scale.price(10025) == Decimal("100.25")
    assert scale.lots(Decimal("2.3")) == 23
    with pytest.raises(ValueError):
        scale.ticks(Decimal("100.255"))
    with pytest.raises(ValueError):
        scale.lots(Decimal("0.05"))


def test_price_then_time_priority():
    engine = book(sell("a", 2, 101, "s1"), sell("b", 2, 100, "s2"), sell("c", 2, 100, "s3"))
    events = engine.apply(buy("x", 5, 101))
    assert trades(events) == [("x", "b", 100, 2), ("x", "c", 100, 2), ("x", "a", 101, 1)]
    assert of(events, Trade)[0].aggressor == "buy"


def test_a_level_counts_the_quantity_and_orders_resting_there():
    engine = book(sell("a", 2, 101), sell("b", 3, 101), sell("c", 4, 101), buy("d", 1, 99))
    engine.apply(Cancel("b", "s"))  # in the middle of its level: only marked dead
    engine.apply(buy("x", 1, 101))  # takes one of a's two
    assert engine.level("sell", 101) == (5, 2)
    assert engine.level("buy", 99) == (1, 1)
    assert engine.level("buy", 101) == engine.level("sell", 100) == (0, 0)
    engine.apply(Cancel("d", "b"))
    assert engine.level("buy", 99) == (0, 0)


def test_no_fill_outside_the_limit():
    engine = book(sell("a", 2, 101))
    events = engine.apply(buy("x", 2, 100))
    assert trades(events) == []
    assert of(events, Rested) == [Rested("x", 100, 2)]
    assert engine.best("buy") == 100 and engine.best("sell") == 101


def test_gtc_rests_ioc_cancels_the_leftover():
    engine = book(sell("a", 2, 100))
    events = engine.apply(buy("x", 5, 100, tif="ioc"))
    assert trades(events) == [("x", "a", 100, 2)]
    assert reasons(events) == [("x", "ioc_leftover")]
    assert engine.best("buy") is None


def test_fok_fills_whole_or_is_rejected_without_side_effects():
    engine = book(sell("a", 2, 100, "s1"), sell("b", 2, 101, "s2"))
    assert reasons(engine.apply(buy("x", 5, 101, tif="fok"))) == [("x", "fok_not_fillable")]
    assert engine.best("sell") == 100 and len(engine.orders) == 2
    events = engine.apply(buy("y", 4, 101, tif="fok"))
    assert trades(events) == [("y", "a", 100, 2), ("y", "b", 101, 2)]


def test_fok_across_levels_with_an_own_order_in_the_way():
    """The incoming order's self-trade prevention decides: cancel_resting takes the own order out and fills over
    three levels; with cancel_incoming the order cannot fill whole, so it is rejected and the own order stays."""
    def levels():
        return book(sell("a", 2, 100, "s1"), sell("mine", 1, 101, "me"), sell("c", 2, 102, "s2"))

    engine = levels()
    assert reasons(engine.apply(buy("x", 4, 102, "me", tif="fok"))) == [("x", "fok_not_fillable")]
    assert set(engine.orders) == {"a", "mine", "c"}
    engine = levels()
    events = engine.apply(buy("x", 4, 102, "me", tif="fok", stp="cancel_resting"))
    assert trades(events) == [("x", "a", 100, 2), ("x", "c", 102, 2)]
    assert reasons(events) == [("mine", "self_trade_cancelled")] and engine.orders == {}


def test_post_only_is_rejected_when_it_would_take_and_rests_otherwise():
    engine = book(sell("a", 2, 100))
    assert reasons(engine.apply(buy("x", 1, 100, tif="post_only"))) == [("x", "post_only_would_take")]
    assert of(engine.apply(buy("y", 1, 99, tif="post_only")), Rested) == [Rested("y", 99, 1)]


def test_market_order_stops_at_its_protection_price_and_never_rests():
    engine = book(sell("a", 1, 100, "s1"), sell("b", 1, 102, "s2"), sell("c", 1, 105, "s3"))
    events = engine.apply(Submit("m", "b", "buy", 5, "market", 102, "ioc"))
    assert trades(events) == [("m", "a", 100, 1), ("m", "b", 102, 1)]
    assert reasons(events) == [("m", "market_protection_leftover")]
    assert "m" not in engine.orders and engine.best("sell") == 105
    assert reasons(engine.apply(Submit("g", "b", "buy", 1, "market", 110, "gtc"))) == [("g", "invalid_time_in_force")]


@pytest.mark.parametrize("mode, cancelled, rest_of_x_trades", [
    ("cancel_resting", [("a", "self_trade_cancelled")], True),
    ("cancel_incoming", [("x", "self_trade_cancelled")], False),
    ("cancel_both", [("a", "self_trade_cancelled"), ("x", "self_trade_cancelled")], False),
])
def test_self_trade_prevention_modes(mode, cancelled, rest_of_x_trades):
    engine = book(sell("a", 2, 100, "me"), sell("b", 2, 100, "other"))
    events = engine.apply(buy("x", 2, 100, "me", stp=mode))
    assert reasons(events) == cancelled
    assert trades(events) == ([("x", "b", 100, 2)] if rest_of_x_trades else [])
    assert ("a" in engine.orders) == (mode == "cancel_incoming")
    assert all(t.buy_user != t.sell_user for t in of(events, Trade))


def test_modify_size_down_keeps_priority_price_or_size_up_loses_it():
    engine = book(sell("a", 3, 100, "s1"), sell("b", 3, 100, "s2"))
    assert of(engine.apply(Modify("a", "s1", qty=2)), Modified) == [Modified("a", 100, 2, 2, True)]
    assert trades(engine.apply(buy("x", 1, 100))) == [("x", "a", 100, 1)]  # a still first
    assert of(engine.apply(Modify("a", "s1", qty=4)), Modified)[0].kept_priority is False
    assert trades(engine.apply(buy("y", 1, 100))) == [("y", "b", 100, 1)]  # a went behind b
    engine.apply(Modify("b", "s2", price=101))
    engine.apply(Modify("b", "s2", price=100))
    assert trades(engine.apply(buy("z", 3, 100))) == [("z", "a", 100, 3)]


def test_modify_at_or_below_filled_cancels_the_rest():
    engine = book(sell("a", 5, 100))
    engine.apply(buy("x", 2, 100))
    events = engine.apply(Modify("a", "s", qty=2))
    assert reasons(events) == [("a", "modified_below_filled")]
    assert of(events, Cancelled)[0].remaining == 3 and "a" not in engine.orders


def test_a_post_only_modify_at_or_below_filled_cancels_the_rest_whatever_its_new_price():
    # given a post-only sell of 5 that 2 filled, and a bid resting at 99
    engine = book(sell("p", 5, 100, tif="post_only"))
    engine.apply(buy("x", 2, 100))
    engine.apply(buy("y", 1, 99, user="b2"))
    # when its owner modifies it to 2 (what has filled) at 99, a price that would take
    events = engine.apply(Modify("p", "s", price=99, qty=2))
    # then nothing re-enters: the rest is cancelled (the README's rule), not refused as post-only
    assert reasons(events) == [("p", "modified_below_filled")]
    assert of(events, Cancelled)[0].remaining == 3 and "p" not in engine.orders and not trades(events)


def test_modify_to_a_crossing_price_trades_and_post_only_modify_is_refused():
    engine = book(sell("a", 2, 101), buy("b", 2, 99, user="b1"), buy("p", 1, 98, user="b2", tif="post_only"))
    assert trades(engine.apply(Modify("b", "b1", price=101))) == [("b", "a", 101, 2)]
    engine.apply(sell("c", 1, 102))
    assert reasons(engine.apply(Modify("p", "b2", price=102))) == [("p", "post_only_would_take")]
    assert engine.orders["p"].px == 98
    assert reasons(engine.apply(Modify("p", "intruder", price=97))) == [("p", "not_owner")]


def test_cancel_and_cancel_all_per_side():
    engine = book(buy("b1", 1, 99, "u"), buy("b2", 1, 98, "u"), sell("s1", 1, 101, "u"), sell("o", 1, 102, "v"))
    assert reasons(engine.apply(Cancel("b1", "u"))) == [("b1", "cancelled")]
    assert reasons(engine.apply(Cancel("b1", "u"))) == [("b1", "unknown_order")]
    assert reasons(engine.apply(CancelAll("u", "sell"))) == [("s1", "cancel_all")]
    assert set(engine.orders) == {"b2", "o"}
    assert reasons(engine.apply(CancelAll("u"))) == [("b2", "cancel_all")]


def test_reduce_only_is_cut_to_the_position_and_rejected_when_nothing_reduces():
    engine = book(buy("b", 10, 100, "x"), positions={"u": 3, "x": -3})
    events = engine.apply(Submit("r", "u", "sell", 5, "limit", 100, "ioc", reduce_only=True))
    assert of(events, Accepted)[0].qty == 3 and trades(events) == [("b", "r", 100, 3)]
    assert engine.positions["u"] == 0
    assert reasons(engine.apply(Submit("r2", "u", "sell", 1, "limit", 100, reduce_only=True))) == [
        ("r2", "reduce_only_nothing_to_reduce")]


def test_resting_reduce_only_never_flips_the_position():
    engine = book(positions={"u": 2, "x": -2})
    engine.apply(sell("plain", 2, 100, "u"))
    engine.apply(Submit("ro", "u", "sell", 2, "limit", 100, reduce_only=True))
    events = engine.apply(buy("t", 4, 100, "t"))
    assert trades(events) == [("t", "plain", 100, 2)]
    assert reasons(events) == [("ro", "reduce_only_nothing_to_reduce")]
    assert engine.positions["u"] == 0


def test_close_position_is_a_reduce_only_market_order_for_the_whole_position():
    engine = book(buy("b1", 2, 100, "x"), buy("b2", 5, 99, "y"), positions={"u": 4, "z": -4})
    events = engine.apply(ClosePosition("c", "u", protection_px=95))
    assert trades(events) == [("b1", "c", 100, 2), ("b2", "c", 99, 2)]
    assert engine.positions["u"] == 0
    assert reasons(engine.apply(ClosePosition("c2", "u", protection_px=95))) == [("c2", "no_position")]
    assert reasons(engine.apply(ClosePosition("c3", "x", protection_px=None))) == [("c3", "invalid_price")]


def test_legs_arm_on_partial_fills_and_grow():
    engine = book(sell("a", 2, 100, "s1"))
    events = engine.apply(buy("e", 5, 100, "u", tp=Leg(110, protection_px=100), sl=Leg(90, protection_px=80)))
    assert [(a.trigger_id, a.qty, a.side) for a in of(events, Armed)] == [("e:tp", 2, "sell"), ("e:sl", 2, "sell")]
    events = engine.apply(sell("b", 1, 100, "s2"))
    assert [(a.trigger_id, a.qty) for a in of(events, Armed)] == [("e:tp", 3), ("e:sl", 3)]
    assert engine.triggers["e:tp"].qty == 3


def test_entry_without_fills_arms_nothing_and_cancelling_it_keeps_armed_legs():
    engine = book(buy("e", 5, 99, "u", tp=Leg(110, protection_px=100)))
    assert engine.triggers == {}
    engine.apply(sell("a", 1, 99, "s"))
    engine.apply(Cancel("e", "u"))
    assert engine.triggers["e:tp"].qty == 1


@pytest.mark.parametrize("source", ["mark", "index", "last"])
def test_stop_loss_fires_on_its_price_source_and_cancels_the_take_profit(source):
    engine = book(sell("a", 2, 100, "s1"), buy("bid", 5, 94, "s2"))
    engine.apply(buy("e", 2, 100, "u", tp=Leg(110, source, protection_px=100), sl=Leg(95, source, protection_px=90)))
    other = {"mark": "index", "index": "mark", "last": "mark"}[source]
    assert not of(engine.apply(SetPrice(other, 90)), Triggered)
    if source == "last":
        events = engine.apply(sell("y", 1, 94, "s3"))  # the engine's own trade at 94
    else:
        events = engine.apply(SetPrice(source, 95))
    assert [(t.trigger_id, t.source) for t in of(events, Triggered)] == [("e:sl", source)]
    assert ("e:tp", "oco_sibling_triggered") in reasons(events)
    assert trades(events)[-1] == ("bid", "e:sl", 94, 2)
    assert engine.positions["u"] == 0 and engine.triggers == {}


def test_trigger_already_crossed_when_it_arms_fires_at_once():
    engine = book(sell("a", 2, 100, "s1"), buy("bid", 5, 98, "s2"))
    engine.apply(SetPrice("mark", 90))
    events = engine.apply(buy("e", 2, 100, "u", sl=Leg(95, "mark", protection_px=90)))
    assert [type(e).__name__ for e in events] == [
        "Accepted", "Trade", "Armed", "Triggered", "Accepted", "Trade"]
    assert trades(events)[-1] == ("bid", "e:sl", 98, 2)


def test_standalone_stop_and_take_profit_orders():
    engine = book(sell("a", 5, 105, "s1"), buy("bid", 5, 95, "s2"))
    engine.apply(PlaceTrigger("stop", "u", "buy", 2, "stop", 103, "mark", protection_px=106))
    engine.apply(PlaceTrigger("tp", "v", "sell", 1, "take_profit", 103, "mark", limit_px=96))
    assert engine.apply(SetPrice("mark", 102)) == []
    events = engine.apply(SetPrice("mark", 104))
    assert [t.trigger_id for t in of(events, Triggered)] == ["stop", "tp"]  # same distance: arming order
    assert trades(events) == [("stop", "a", 105, 2)]
    assert engine.orders["tp"].px == 96  # the take-profit entered as a limit order and rests


def test_firing_order_is_the_largest_distance_crossed_first():
    engine = book(sell("a", 10, 100, "s1"))
    engine.apply(PlaceTrigger("near", "u1", "buy", 1, "stop", 101, "mark", protection_px=110))
    engine.apply(PlaceTrigger("far", "u2", "buy", 1, "stop", 99, "mark", protection_px=110))
    engine.apply(PlaceTrigger("mid", "u3", "buy", 1, "stop", 100, "index", protection_px=110))
    engine.apply(SetPrice("index", 98))
    engine.apply(SetPrice("mark", 98))
    events = engine.apply(SetPrice("mark", 102))
    assert [t.trigger_id for t in of(events, Triggered)] == ["far", "near"]
    events = engine.apply(SetPrice("index", 105))
    assert [t.trigger_id for t in of(events, Triggered)] == ["mid"]


def test_last_trigger_fires_on_the_engines_own_trades_and_cascades():
    engine = book(sell("a", 1, 100, "s1"), sell("b", 1, 102, "s2"), sell("c", 1, 104, "s3"))
    engine.apply(PlaceTrigger("t1", "u1", "buy", 1, "stop", 100, "last", protection_px=110))
    engine.apply(PlaceTrigger("t2", "u2", "buy", 1, "stop", 102, "last", protection_px=110))
    events = engine.apply(buy("x", 1, 100, "u0"))
    assert [t.trigger_id for t in of(events, Triggered)] == ["t1", "t2"]
    assert trades(events) == [("x", "a", 100, 1), ("t1", "b", 102, 1), ("t2", "c", 104, 1)]


def test_conservation_buy_lots_equal_sell_lots_positions_sum_to_zero():
    engine = Engine()
    all_events = []
    for n in range(40):
        side = "buy" if n % 3 else "sell"
        all_events += engine.apply(Submit(f"o{n}", f"u{n % 5}", side, 1 + n % 4, "limit", 98 + n % 5,
                                          tp=Leg(104, protection_px=90) if n % 2 else None))
    made = of(all_events, Trade)
    assert made
    assert sum(engine.positions.values()) == 0
    for user, position in engine.positions.items():
        assert position == sum(t.qty for t in made if t.buy_user == user) - sum(
            t.qty for t in made if t.sell_user == user)


def test_snapshot_lists_resting_orders_in_priority_order_and_armed_triggers():
    engine = book(buy("b1", 1, 99, "x"), buy("b2", 1, 100, "y"), buy("b3", 1, 100, "z"), sell("s", 1, 103, "w"))
    engine.apply(PlaceTrigger("st", "x", "sell", 1, "stop", 95, "mark", protection_px=90))
    snap = engine.snapshot()
    assert [o["order_id"] for o in snap["orders"]] == ["b2", "b3", "b1", "s"]
    assert [t["trigger_id"] for t in snap["triggers"]] == ["st"]
    rebuilt = Engine.from_snapshot(snap)
    assert rebuilt.snapshot() == snap
    assert trades(rebuilt.apply(sell("t", 2, 99, "q"))) == [("b2", "t", 100, 1), ("b3", "t", 100, 1)]


def test_modify_moves_an_armed_leg_and_arms_a_new_leg_for_the_filled_part():
    engine = book(sell("a", 2, 100, "s1"))
    engine.apply(buy("e", 5, 100, "u", tp=Leg(110, "mark", protection_px=100)))
    moved = Modify("e", "u", tp=Leg(105, "mark", protection_px=100), sl=Leg(95, "mark", protection_px=90))
    events = engine.apply(moved)
    assert [(a.trigger_id, a.qty, a.trigger_px) for a in of(events, Armed)] == [("e:tp", 2, 105), ("e:sl", 2, 95)]
    assert of(engine.apply(SetPrice("mark", 96)), Triggered) == []
    events = engine.apply(SetPrice("mark", 95))
    assert [t.trigger_id for t in of(events, Triggered)] == ["e:sl"]
    # the stop-loss sell meets the entry's own resting bid: self-trade prevention of the entry's mode
    assert reasons(events) == [("e:tp", "oco_sibling_triggered"), ("e:sl", "self_trade_cancelled")]
    # the pair is done: a later fill of the entry arms nothing
    assert of(engine.apply(sell("b", 1, 100, "s2")), Armed) == []
