"""The engine leaves no reference cycles behind: a filled or cancelled order and a fired or cancelled trigger are
freed as soon as the engine drops them, never left for the garbage collector (whose pauses the matching worker
would otherwise pay, see BENCHMARKS.md "Continuous matching engine").

Checked on engine.py run as plain Python, where every order and trigger is tracked by the collector. The compiled
module declares its classes acyclic (`mypyc_attr(acyclic=True)`: the collector never sees them), which is right
only because of this property: there, an object in a cycle would not be collected late but leak."""

import gc

from hypothesis import HealthCheck, given, settings

from .source import command_for, source_engine
from .strategies import positions, streams

E = source_engine()


def _cyclic_garbage(run) -> list:
    """The orders and triggers made by `run()` that only the cycle collector could free. `run` returns its engine:
    what the engine dropped must be gone while it lives, and what it still holds (resting orders, armed pairs) must
    go with it when it is dropped."""
    gc.collect()
    before = {id(o) for o in gc.get_objects() if type(o) in (E._Order, E._Trig)}
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        engine = run()
        gc.collect()
        found = [o for o in gc.garbage if type(o) in (E._Order, E._Trig) and id(o) not in before]
        del engine
        gc.collect()
        return found + [o for o in gc.garbage if type(o) in (E._Order, E._Trig) and id(o) not in before]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), positions())
def test_spent_orders_and_triggers_are_not_left_in_cycles(commands, seed):
    def run():
        engine = E.Engine(seed | {"u4": -sum(seed.values())})
        for command in commands:
            engine.apply(command_for(E, command))
        return engine

    assert _cyclic_garbage(run) == []


def test_a_fired_pair_and_its_filled_entry_are_freed():
    def run():
        engine = E.Engine()
        engine.apply(E.Submit("a", "s", "sell", 2, "limit", 100))
        engine.apply(E.Submit("bid", "b", "buy", 5, "limit", 94))
        engine.apply(E.Submit("e", "u", "buy", 2, "limit", 100, tp=E.Leg(110, protection_px=100),
                              sl=E.Leg(95, "mark", protection_px=90)))
        events = engine.apply(E.SetPrice("mark", 95))
        assert [e.trigger_id for e in events if isinstance(e, E.Triggered)] == ["e:sl"]
        assert engine.triggers == {} and "e" not in engine.orders
        return engine

    assert _cyclic_garbage(run) == []


def test_an_armed_pair_goes_with_its_engine():
    def run():
        engine = E.Engine()
        engine.apply(E.Submit("a", "s", "sell", 2, "limit", 100))
        engine.apply(E.Submit("e", "u", "buy", 2, "limit", 100, tp=E.Leg(110, protection_px=100),
                              sl=E.Leg(95, protection_px=90)))
        assert sorted(engine.triggers) == ["e:sl", "e:tp"]
        return engine

    assert _cyclic_garbage(run) == []
