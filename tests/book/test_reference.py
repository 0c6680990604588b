"""Property: the engine and the deliberately simple reference matcher give the same events for any stream,
and an engine rebuilt from a snapshot mid-stream goes on exactly as the uninterrupted one."""

from hypothesis import HealthCheck, given, settings

from ccp.book.engine import Engine, Trade

from .reference import Reference
from .source import command_for, plain, source_engine
from .strategies import positions, streams

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seed_balanced(seed):
    """Seeded positions that sum to zero (the fourth user takes the other side)."""
    return seed | {"u4": -sum(seed.values())}


@SETTINGS
@given(streams(), positions())
def test_engine_matches_reference(commands, seed):
    seed = _seed_balanced(seed)
    engine, reference = Engine(seed), Reference(seed)
    for n, command in enumerate(commands):
        got = engine.apply(command)
        want = reference.apply(command)
        assert got == want, f"command {n}: {command}"
        bought = sum(e.qty for e in got if isinstance(e, Trade))
        assert bought == sum(e.qty for e in want if isinstance(e, Trade))
    assert sum(engine.positions.values()) == 0
    assert {u: p for u, p in engine.positions.items() if p} == {u: p for u, p in reference.positions.items() if p}


@SETTINGS
@given(streams(max_size=80), positions())
def test_rebuilt_from_snapshot_behaves_the_same(commands, seed):
    seed = _seed_balanced(seed)
    half = len(commands) // 2
    straight = Engine(seed)
    whole = [straight.apply(c) for c in commands]
    first = Engine(seed)
    events = [first.apply(c) for c in commands[:half]]
    rebuilt = Engine.from_snapshot(first.snapshot())
    events += [rebuilt.apply(c) for c in commands[half:]]
    assert events == whole
    assert rebuilt.snapshot() == straight.snapshot()


@SETTINGS
@given(streams(), positions())
def test_the_source_engine_matches_reference(commands, seed):
    """The same property for ccp/book/engine.py run as plain Python (what runs when it is not compiled)."""
    module = source_engine()
    seed = _seed_balanced(seed)
    engine, reference = module.Engine(seed), Reference(seed)
    for n, command in enumerate(commands):
        assert plain(engine.apply(command_for(module, command))) == plain(reference.apply(command)), \
            f"command {n}: {command}"
    assert {u: p for u, p in engine.positions.items() if p} == {u: p for u, p in reference.positions.items() if p}


@SETTINGS
@given(streams(), positions())
def test_rebuilt_after_every_command_behaves_the_same(commands, seed):
    """A rebuild at any point, not only mid-stream: after each command the engine is replaced by one rebuilt from
    its snapshot, and every event and snapshot equals the uninterrupted engine's."""
    seed = _seed_balanced(seed)
    straight, rebuilt = Engine(seed), Engine(seed)
    for n, command in enumerate(commands):
        assert rebuilt.apply(command) == straight.apply(command), f"command {n}: {command}"
        rebuilt = Engine.from_snapshot(rebuilt.snapshot())
        assert rebuilt.snapshot() == straight.snapshot(), f"after command {n}: {command}"
