"""The liquidation scan alone: from a price tick to every liquidatable position identified, on a quiet tick
and on a 2% crash tick, for 10,000 / 100,000 / 1,000,000 open positions, next to a plain loop over every
position measured in the same run (the peer's method) and the peer's published figures.

    .venv/bin/python bench/liquidation_scan.py [--sizes 10000 100000 1000000] [--runs 3] [--seed 1]

Positions (one contract, isolated margin, as the peer's): half long, half short, entry uniform in
[99, 101], leverage uniform in 1..100, size 0.1 to 10; each one's liquidation price from
``ccp.perps.margin.liquidation_price`` (maintenance 0.5%, fee 0.05%, tick 0.01) in ticks; a position
already liquidatable at marks 99.99 to 100.01 is drawn again (it would have been liquidated). Set-up (prices,
and building the index as a restarted worker rebuilds it) is timed apart. A tick is a mark in ticks; the
quiet tick moves the mark 0.01% from 100, the crash tick 2% down. "Identified" is ``PriceIndex.crossed``:
the crossed entries cut out of the index as two slices; listing their keys one by one (what the
liquidation engine does as it takes each) is printed apart. Figures are CPU time
(``time.process_time_ns``), medians of ``--runs``; the index's answer must equal the plain loop's set.

The service keeps this index per perpetual (one book per maintenance tier) in its worker's memory, synced
from PostgreSQL before each check (``ccp.perps.live``): ``bench/liquidation_db.py`` times that path through the
database, ``bench/liquidation_book.py`` the booking of a crash tick's liquidations.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ccp.perps.index import LONG, SHORT, PriceIndex  # noqa: E402
from ccp.perps.margin import initial_margin, liquidation_price  # noqa: E402

TICK = Decimal("0.01")
RATE, FEE = Decimal("0.005"), Decimal("0.0005")
# The peer (../shared/bench/README.md): ms per tick, quiet and 2% crash, CPU time, medians of 3.
PEER = {10_000: (3.0, 12.9), 100_000: (35.0, 142.0), 1_000_000: (302.0, 930.0)}
CONTRACT = 1


def positions(count: int, seed: int) -> list[tuple[int, str, int]]:
    """(key, side, liquidation price in ticks, or -1 for none) of ``count`` random isolated positions."""
    rng = random.Random(seed)
    made = []
    while len(made) < count:
        key = len(made)
        side = LONG if key % 2 else SHORT
        entry = Decimal(rng.randint(9900, 10100)) * TICK
        quantity = Decimal(rng.randint(1, 100)) / 10 * (1 if side == LONG else -1)
        margin = initial_margin(quantity=quantity, price=entry, leverage=Decimal(rng.randint(1, 100)))
        price = liquidation_price(quantity=quantity, entry_px=entry, margin=margin, rate=RATE, fee_rate=FEE, tick=TICK)
        ticks = -1 if price is None else int(price / TICK)
        if ticks < 0 or (ticks < 9999 if side == LONG else ticks > 10001):
            made.append((key, side, ticks))
    return made


def plain_scan(rows: list[tuple[int, str, int]], mark: int) -> list[int]:
    """The peer's method: walk every stored position and compare."""
    return [key for key, side, ticks in rows
            if ticks >= 0 and (ticks >= mark if side == LONG else ticks <= mark)]


def cpu_ms(call, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.process_time_ns()
        result = call()
        times.append((time.process_time_ns() - start) / 1e6)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("liquidation scan: one contract, isolated positions, leverage 1..100; CPU ms, median of", args.runs)
    print(f"{'positions':>10} {'tick':>6} {'found':>8} {'index ms':>9} {'plain ms':>9} {'ratio':>7} "
          f"{'peer ms':>8} {'vs peer':>8}")
    for size in args.sizes:
        started = time.process_time()
        rows = positions(size, args.seed)
        made_s = time.process_time() - started
        build_ms, index = cpu_ms(lambda rows=rows: PriceIndex(
            (key, CONTRACT, side, ticks) for key, side, ticks in rows if ticks >= 0), 1)
        listing = {}
        for name, mark, peer in (("quiet", 9999, PEER.get(size, (None,))[0]),
                                 ("crash", 9800, PEER.get(size, (None, None))[1])):
            index_ms, found = cpu_ms(lambda mark=mark, index=index: index.crossed(CONTRACT, mark), args.runs)
            plain_ms, walked = cpu_ms(lambda mark=mark, rows=rows: plain_scan(rows, mark), args.runs)
            listed_ms, listed = cpu_ms(lambda found=found: list(found), args.runs)
            if sorted(listed) != sorted(walked):
                raise SystemExit(f"index and plain scan disagree at {size} positions, {name} tick")
            listing[name] = listed_ms
            vs_peer = f"{peer / index_ms:7.0f}x" if peer else "       -"
            print(f"{size:>10,} {name:>6} {len(found):>8,} {index_ms:>9.3f} {plain_ms:>9.1f} "
                  f"{plain_ms / index_ms:>6.0f}x {peer or '-':>8} {vs_peer}")
        print(f"{'':>10} set-up: positions priced in {made_s:.1f} s, index built (restart) in {build_ms:.0f} ms; "
              f"listing every crossed key one by one (the liquidation engine's own walk): quiet "
              f"{listing['quiet']:.3f} ms, crash {listing['crash']:.1f} ms")


if __name__ == "__main__":
    main()
