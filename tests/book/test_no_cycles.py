"""The engine leaves no reference cycles behind: a filled or cancelled order and a fired or cancelled trigger are
freed as soon as the engine drops them, never left for the garbage collector (whose pauses the matching worker
would otherwise pay, see BENCHMARKS.md "Continuous matching engine")."""

import gc

from hypothesis import HealthCheck, given, settings

from ccp.book import engine as E

from .strategies import positions, streams


def _cyclic_garbage(run) -> list:
    """The orders and triggers made by `run()` that only the cycle collector could free. `run` returns its engine,
    kept alive here: what the engine still holds is not garbage, what it dropped must already be gone."""
    gc.collect()
    before = {id(o) for o in gc.get_objects() if type(o) in (E._Order, E._Trig)}
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        engine = run()
        gc.collect()
        found = [o for o in gc.garbage if type(o) in (E._Order, E._Trig) and id(o) not in before]
        del engine
        return found
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
            engine.apply(command)
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
