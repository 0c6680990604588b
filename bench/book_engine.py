"""The continuous matching engine alone on the shared order stream: events/s, per-event latency, semantics counters.

    .venv/bin/python bench/book_engine.py [--stream PATH] [--runs 3] [--profile] [--against REV] [--plain]

The engine timed is the module the system imports: compiled with mypyc when bin/bootstrap.sh has built it (the
bench says which, and refuses a build made from another engine.py), else engine.py as Python. `--plain` times
engine.py run as plain Python (loaded by path) instead; `--against REV` always loads REV's engine.py as Python,
so `--against REV` gives compilation and code changes together, `--plain --against REV` the code changes alone.

Every event of the stream is replayed (limit, market, cancel, modify, with their take-profit and stop-loss
legs). Prices go from their JSON text to Decimal to ticks (`json.loads(..., parse_float=Decimal)`, never a
float). The stream is parsed into engine commands first; only `Engine.apply` is timed, one
`time.perf_counter_ns` pair per event. The baseline, measured in the same run, is a plain loop that parses
each JSON line and dispatches it into a dict keyed by order id (the least any engine must do per event); the
first 5,000 events also go through the tests' reference matcher, which must give the same events. A last figure
times only the construction of the events the engine returned (the same event objects, built again from their
fields): the least any engine with this interface spends, whatever its matching costs.

`--against REV` also replays the stream through the engine as it was at git revision REV, alternating with this
one in the same process (CPU time of the whole replay loop, no per-event timing): the speed-up, measured so that
the machine's load weighs on both alike.

Garbage collector: on, default thresholds; the parsed stream is frozen out of it first (`gc.freeze()`), as the
matching worker freezes a book it has just rebuilt. Two more figures: the collector with no full collection
during the replay (threshold of the oldest generation raised: the engine makes no reference cycles, so only
the young generations have anything to find), and the collector paused for the whole replay.

Mapping of the stream (the stream gives no protection prices, so the bench sets them):
- limit: a gtc limit order; market: an ioc market order protected at the last trade price +/- 2%
  (the first trade's absent: 100.00 +/- 2%);
- tp / sl: legs triggered on the last trade price, entering as market orders protected 2% beyond the
  trigger price;
- cancel: a cancel by id; modify: a new price (loses priority) and/or new legs, by id.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import types
from collections import Counter
from dataclasses import astuple, fields
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ccp.book import engine as this_engine  # noqa: E402
from tests.book.source import PATH as ENGINE_SOURCE  # noqa: E402
from tests.book.source import is_compiled, plain, source_engine  # noqa: E402

E = this_engine  # the engine module under test: the one the system imports, or with --plain engine.py as Python

STREAM = Path("/work/shared/bench/orders_seed20250309_n100k.jsonl")
SCALE = this_engine.Scale(Decimal("0.01"))
PEERS = {"opti-trader v2.0.0": 12_300, "opti-trader main": 6_500}
TARGET = 250_000


def _leg(entry_side: str, trigger: Decimal | None) -> E.Leg | None:
    if trigger is None:
        return None
    px = SCALE.ticks(trigger)
    # The leg sells a long (worst acceptable 2% below) or buys back a short (2% above).
    protection = px * 98 // 100 if entry_side == "buy" else -(-px * 102 // 100)
    return E.Leg(px, "last", protection_px=protection)


class MarketProtection:
    """Market orders get the last trade price +/- 2% as protection, read from the engine as the replay goes."""

    __slots__ = ("engine",)

    def __init__(self) -> None:
        self.engine: E.Engine | None = None

    def protect(self, cmd: E.Submit) -> E.Submit:
        last = self.engine.prices["last"] or 10000
        cmd.price = -(-last * 102 // 100) if cmd.side == "buy" else last * 98 // 100
        return cmd


def commands(lines: list[str]) -> list:
    out = []
    for line in lines:
        e = json.loads(line, parse_float=Decimal)
        kind, oid, user, side = e["type"], e["id"], e["user"], e["side"]
        at = e["ts"]
        if kind == "limit":
            out.append(E.Submit(oid, user, side, e["qty"], "limit", SCALE.ticks(e["price"]), "gtc",
                              tp=_leg(side, e["tp"]), sl=_leg(side, e["sl"]), at=at))
        elif kind == "market":
            out.append(E.Submit(oid, user, side, e["qty"], "market", None, "ioc",
                              tp=_leg(side, e["tp"]), sl=_leg(side, e["sl"]), at=at))
        elif kind == "cancel":
            out.append(E.Cancel(oid, user, at=at))
        elif kind == "modify":
            price = None if e["price"] is None else SCALE.ticks(e["price"])
            qty = e["qty"]
            out.append(E.Modify(oid, user, price, qty, _leg(side, e["tp"]), _leg(side, e["sl"]), at=at))
        else:
            raise ValueError(f"unknown event type {kind}")
    return out


def baseline(lines: list[str]) -> int:
    """Parse and dispatch into a dict, nothing else: nanoseconds for the whole stream."""
    book: dict[str, dict] = {}
    start = time.perf_counter_ns()
    for line in lines:
        e = json.loads(line, parse_float=Decimal)
        kind = e["type"]
        if kind == "cancel":
            book.pop(e["id"], None)
        elif kind == "modify":
            if e["id"] in book:
                book[e["id"]]["price"] = e["price"]
        else:
            book[e["id"]] = e
    return time.perf_counter_ns() - start


NO_FULL_COLLECTION = (700, 10, 1_000_000)


def replay(cmds: list, counters: Counter | None = None, collector: bool = True,
           cpu: list | None = None, thresholds: tuple[int, int, int] | None = None) -> list[int]:
    """Run the commands through a fresh engine; per-event latencies in ns.

    The parsed stream (about 400,000 objects the engine does not own) is frozen out of the garbage collector
    first, so that the collector's pauses are those of the engine's own state. `collector=False` pauses the
    collector during the replay altogether; `thresholds` sets the collector's thresholds for the replay."""
    gc.collect()
    gc.freeze()
    if not collector:
        gc.disable()
    default_thresholds = gc.get_threshold()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    engine = E.Engine()
    guard = MarketProtection()
    guard.engine = engine
    apply = engine.apply
    clock = time.perf_counter_ns
    lat = []
    record = lat.append
    cpu_start = time.process_time_ns()
    for cmd in cmds:
        if cmd.__class__ is E.Submit and cmd.kind == "market":
            guard.protect(cmd)
        t0 = clock()
        events = apply(cmd)
        record(clock() - t0)
        if counters is not None:
            _count(counters, events)
    if cpu is not None:
        cpu.append(time.process_time_ns() - cpu_start)
    gc.enable()
    gc.set_threshold(*default_thresholds)
    gc.unfreeze()
    if counters is not None:
        counters["position sum (must be 0)"] = sum(engine.positions.values())
        counters["resting orders at end"] = len(engine.orders)
        counters["armed triggers at end"] = len(engine.triggers)
    return lat


def engine_at(rev: str) -> types.ModuleType:
    """ccp/book/engine.py as it was at git revision `rev`, loaded as a module of its own."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:ccp/book/engine.py"], capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType(f"engine_at_{rev}")
    sys.modules[module.__name__] = module  # the dataclasses look their module up
    exec(compile(source, f"{rev}:ccp/book/engine.py", "exec"), module.__dict__)
    return module


def _commands_for(module: types.ModuleType, cmds: list) -> list:
    """The same commands, built from another engine module's classes (engines dispatch on the class)."""
    def leg(value):
        return None if value is None else module.Leg(*astuple(value))
    out = []
    for cmd in cmds:
        values = [leg(getattr(cmd, f.name)) if f.name in ("tp", "sl") else getattr(cmd, f.name) for f in fields(cmd)]
        out.append(getattr(module, cmd.__class__.__name__)(*values))
    return out


def cpu_replay(module: types.ModuleType, cmds: list) -> int:
    """CPU nanoseconds of a whole replay through `module.Engine`, collector on, the stream frozen out of it."""
    gc.collect()
    gc.freeze()
    engine = module.Engine()
    guard = MarketProtection()
    guard.engine = engine
    apply = engine.apply
    start = time.process_time_ns()
    for cmd in cmds:
        if getattr(cmd, "kind", None) == "market":
            guard.protect(cmd)
        apply(cmd)
    spent = time.process_time_ns() - start
    gc.unfreeze()
    return spent


def against(rev: str, lines: list[str], runs: int) -> tuple[float, float]:
    """Median CPU time of the engine at `rev` and of this one, replays alternating: (theirs, ours) in ns."""
    module = engine_at(rev)
    theirs_ns, ours_ns = [], []
    for _ in range(runs):
        theirs_ns.append(cpu_replay(module, _commands_for(module, commands(lines))))
        ours_ns.append(cpu_replay(E, commands(lines)))
    return statistics.median(theirs_ns), statistics.median(ours_ns)


def reference_check(lines: list[str], n: int = 5000) -> tuple[bool, float]:
    """The first n events through the engine and through the simple reference matcher of the tests: same events?
    Also the reference's speed (events/s), a second baseline."""
    from tests.book.reference import Reference

    cmds = commands(lines[:n])
    engine, reference = E.Engine(), Reference()
    guard = MarketProtection()
    guard.engine = engine
    same = True
    spent = 0
    for cmd in cmds:
        if cmd.__class__ is E.Submit and cmd.kind == "market":
            guard.protect(cmd)
        t0 = time.perf_counter_ns()
        want = reference.apply(cmd)
        spent += time.perf_counter_ns() - t0
        same = same and plain(engine.apply(cmd)) == plain(want)
    return same, n / (spent / 1e9)


def events_floor(cmds: list, runs: int) -> tuple[float, int]:
    """Nanoseconds to build again, from their fields, every event the engine returns for the stream (median of
    `runs`): the cost of the output alone; and the number of events."""
    engine = E.Engine()
    guard = MarketProtection()
    guard.engine = engine
    recorded = []
    for cmd in cmds:
        if cmd.__class__ is E.Submit and cmd.kind == "market":
            guard.protect(cmd)
        recorded.append([(ev.__class__, tuple(getattr(ev, f.name) for f in fields(ev)))
                         for ev in engine.apply(cmd)])
    gc.collect()
    gc.freeze()
    spent = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        for events in recorded:
            out = []
            for cls, values in events:
                out.append(cls(*values))
        spent.append(time.perf_counter_ns() - start)
    gc.unfreeze()
    return statistics.median(spent), sum(map(len, recorded))


def _count(counters: Counter, events: list) -> None:
    for ev in events:
        cls = ev.__class__
        if cls is E.Trade:
            counters["trades"] += 1
            counters["trade lots"] += ev.qty
            if ev.buy_user == ev.sell_user:
                counters["self trades (must be 0)"] += 1
        elif cls is E.Triggered:
            counters["triggers fired"] += 1
        elif cls is E.Armed:
            counters["legs armed or grown"] += 1
        elif cls is E.Rejected:
            counters[f"rejected {ev.reason}"] += 1
        elif cls is E.Cancelled:
            counters[f"cancelled {ev.reason}"] += 1


def _engine_kind() -> str:
    """Which engine is timed; exits when the compiled module was not built from engine.py as it is now."""
    if not is_compiled(E):
        return f"{ENGINE_SOURCE.relative_to(REPO)} run as plain Python (not compiled)"
    stamp = REPO / ".var" / "mypyc" / "engine.sha256"
    want = hashlib.sha256(ENGINE_SOURCE.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != want:
        sys.exit(f"{Path(E.__file__).name} was not built from engine.py as it is now: run bin/bootstrap.sh")
    return f"compiled with mypyc ({Path(E.__file__).name}, built from engine.py sha256 {want[:12]})"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", type=Path, default=STREAM)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--against", metavar="REV", help="also time the engine at this git revision, alternating")
    parser.add_argument("--plain", action="store_true", help="time ccp/book/engine.py run as plain Python")
    args = parser.parse_args()
    global E
    E = source_engine() if args.plain else this_engine
    print(f"engine: {_engine_kind()}")
    lines = args.stream.read_text().splitlines()
    n = len(lines)
    print(f"stream: {args.stream.name}, {n} events; load average at start {_load()}")
    print("garbage collector: on, default thresholds, the parsed stream frozen out of it (gc.freeze) before each "
          "replay, as the matching worker freezes a book it has just rebuilt")

    counters: Counter = Counter()
    replay(commands(lines), counters)  # warm-up run, also the semantics counters
    runs = []
    cpu: list[int] = []
    for _ in range(args.runs):
        lat = replay(commands(lines), cpu=cpu)
        runs.append((sum(lat), sorted(lat)))
    runs.sort(key=lambda r: r[0])
    total_ns, lat = runs[len(runs) // 2]
    paused = sorted((sum(lat), lat) for lat in (replay(commands(lines), collector=False) for _ in range(args.runs)))
    paused_ns = paused[len(paused) // 2][0]
    no_full_ns = statistics.median(sum(replay(commands(lines), thresholds=NO_FULL_COLLECTION))
                                   for _ in range(args.runs))
    base_ns = statistics.median(baseline(lines) for _ in range(args.runs))

    same, reference_rate = reference_check(lines)
    floor_ns, event_count = events_floor(commands(lines), args.runs)
    rate = n / (total_ns / 1e9)
    print(f"engine (median of {args.runs} runs, Engine.apply only): {rate:,.0f} events/s; "
          f"per event p50 {pct(lat, 0.5):.1f} us, p99 {pct(lat, 0.99):.1f} us, p99.9 {pct(lat, 0.999):.1f} us, "
          f"max {lat[-1] / 1000:.0f} us")
    print(f"engine by CPU time of the whole replay loop (median of {args.runs}, as the peers' figures; includes the "
          f"timing calls): {n / (statistics.median(cpu) / 1e9):,.0f} events/s")
    print(f"engine with no full collection during the replay (gc thresholds {NO_FULL_COLLECTION}): "
          f"{n / (no_full_ns / 1e9):,.0f} events/s")
    print(f"engine with the garbage collector paused during the replay: {n / (paused_ns / 1e9):,.0f} events/s")
    print(f"the output alone (building again the {event_count:,} event objects the engine "
          f"returned, nothing else): {n / (floor_ns / 1e9):,.0f} events/s, {floor_ns / (total_ns or 1):.0%} of the "
          f"engine's time")
    print(f"baseline (same run: json.loads with Decimal + dispatch into a dict): {n / (base_ns / 1e9):,.0f} events/s")
    print(f"reference matcher of tests/book (lists and loops), first 5,000 events: {reference_rate:,.0f} events/s; "
          f"same events as the engine: {'yes' if same else 'NO'}")
    for name, figure in PEERS.items():
        print(f"peer {name}: {figure:,} events/s (shared README): engine is {rate / figure:.1f}x")
    print(f"target {TARGET:,} events/s: {'reached' if rate >= TARGET else 'NOT reached'} ({rate / TARGET:.2f}x)")
    if args.against:
        theirs_ns, ours_ns = against(args.against, lines, max(args.runs, 5))
        print(f"engine at {args.against} and this engine, replays alternating in this process (CPU time of the "
              f"whole loop, median of {max(args.runs, 5)}): {n / (theirs_ns / 1e9):,.0f} and "
              f"{n / (ours_ns / 1e9):,.0f} events/s: {theirs_ns / ours_ns:.2f}x")
    print(f"load average at the end: {_load()}")
    print("semantics counters:")
    for key in sorted(counters):
        print(f"  {key}: {counters[key]:,}")

    if args.profile:
        cmds = commands(lines)
        profiler = cProfile.Profile()
        profiler.runcall(replay, cmds)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
