"""Booking a crash tick's liquidations through a real PostgreSQL: from a 2% drop of the index to every position it
reached liquidated (on the book, taken over by the insurance fund or auto-deleveraged), with a same-run baseline.

Per size (``--sizes``, default 1000 and 10000) a perpetual of its own (``B<i>-U<i>-PERP``, its own collateral
currency, so sizes share nothing but the insurance fund's client: tick 0.5, lot 0.001, tiers 0.5% up to 10 BTC
at 100x then 1% at 50x, liquidation fee 0.2%, the terms of ``tests/perps/test_listing.py``) with ``size`` open
positions, one client each, opened THROUGH the order path: a maker rests sells at 50,000..50,050 and buys at
49,950..49,995 (leverage 1, cross) for exactly what the clients take, each client sends one limit order
(``orders_submit``) crossing them, and ``book_match`` books them all: every row (orders, trades, positions,
margins, cash, fund locks) is the system's own. The clients: three quarters long, half isolated, half cross,
leverage 2..50 (a third at 40 or 50), notional 2,000..20,000; an isolated client deposits its margin at the
order's price plus 0..50%, a cross client plus 0..10% (its account is its margin). Then the maker's thin bid
ladder: 100 levels from 49,500 down by 10, holding together ``--ladder`` (default 5%) of the long quantity, so the
book cannot take every liquidation; the insurance fund holds ``--fund`` (default 10) USDC per position, so the
waterfall goes down to ADL. All of this is set-up, timed apart.

The crash tick: the index quoted 2% lower (49,000) and ``perpetual_marks_update`` (the mark moves with the book's
mid, bounded to 0.5% of the index: it lands above 49,000). Then, wall and CPU of this process (PostgreSQL's own
CPU is in the wall time):

1. identify: ``isolated_candidates`` + ``cross_candidates`` at the new mark (what the tick finds; the check
   does it again inside ``enter``);
2. enter: ``perpetual_liquidations_run``, what the tasks call (``perpetual_liquidations_enter`` in transactions
   of at most CCP_LIQUIDATIONS_PER_CHECK positions, worst first): the reduce-only orders, and the takeovers and
   ADL it books directly;
3. book: the matcher (``book_match`` until it takes nothing, as the task does) for the liquidation orders, then
   the next check (``perpetual_liquidations_run``: takeovers of the leftovers, the fund's unwind) and the
   matcher again, until a check enters no step (at most ``--rounds`` checks). A check that would find the mark
   stale (older than CCP_SPOT_STALE_AFTER: it would do nothing) gets a new price tick at the same index first, as
   the beat's next spot load would give it, and so does one refused ``client_order_id_reused`` (the insurance
   fund's unwind order asked again at the same mark after a partial fill); both are counted and printed.

Baseline, same run, after the crash is booked: the maker's ladder again (same levels and quantities), and as many
plain reduce-only immediate-or-cancel market sells as the crash entered liquidation orders, by ordinary clients
(long positions the crash left alone), each for the size (at most the position) and protection price of one
liquidation order, stored with ``orders_submit`` (not timed), then the matcher until it takes nothing, timed: the
ratio total / baseline is what the liquidation machinery costs beyond booking that many orders.

Printed per size: positions, liquidatable found, steps by kind (order/takeover/adl), each phase's ms (wall, CPU in
brackets), total ms, ms per liquidated position (total / positions liquidated), the checks and rounds, the
baseline and the ratio. The database is checked at the end: ``invariants_check()`` ok (cash sums to zero,
positions to zero, available never negative but the insurance fund's), and no position left at negative equity
at the mark but the fund's (as ``tests/perps/test_crash.py`` checks, with its ``equities``).

PostgreSQL and Redis are the repository's own (``bin/stack.py``, fsync off as for tests), started fresh here and
stopped at the end; Django runs in a child process. About 10 minutes with the default sizes on 2 cores:

    .venv/bin/python bench/liquidation_book.py [--sizes 1000,10000] [--ladder 0.05] [--fund 10] [--rounds 10]
                                               [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.book_batch import child_run, log  # noqa: E402 - the repository root on the path first

RESULT_MARK = "BENCH-LIQUIDATION-BOOK-JSON "
LEVERAGES = (2, 5, 10, 20, 25, 40, 40, 50, 50)  # a third at 40 or 50: a 2% drop reaches those
LADDER_LEVELS, LADDER_TOP, LADDER_STEP = 100, 49500, 10


def child(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from collections import Counter
    from decimal import Decimal as D

    from django.db import transaction
    from django.db.models import Sum

    from ccp.accounts.models import Client, FundLock
    from ccp.book.services import book_match
    from ccp.clock import utcnow
    from ccp.contracts.models import Currency, Pair
    from ccp.errors import ApplicationError
    from ccp.orders.models import Order
    from ccp.orders.services import OrderRequest, orders_submit
    from ccp.perps.fund import insurance_fund_client, insurance_fund_locks
    from ccp.perps.margin import Tier
    from ccp.perps.models import Liquidation, Perpetual
    from ccp.perps.selectors import mark_fresh
    from ccp.perps.services import (
        cross_candidates,
        isolated_candidates,
        perpetual_liquidations_run,
        perpetual_list,
        perpetual_marks_update,
    )
    from ccp.risk.collateral import available
    from ccp.risk.models import Position
    from ccp.settlement.models import CashMovement
    from ccp.system.invariants import invariants_check
    from tests.perps.test_crash import equities
    from tests.perps.test_listing import quote

    rng = random.Random(args.seed)
    tiers = [Tier(D(10), D("0.005"), D(100)), Tier(None, D("0.01"), D(50))]
    serial = iter(range(1, 10**9))
    addresses = iter(range(0x1000, 10**12))

    def clients_make(deposits: list[D], currency) -> list:
        now = utcnow()
        made = Client.objects.bulk_create([Client(address=f"0x{next(addresses):040x}", registered_at=now)
                                           for _ in deposits])
        FundLock.objects.bulk_create([FundLock(client=c, currency=currency, fundlock=d, updated_at=now)
                                      for c, d in zip(made, deposits, strict=True)])
        return made

    def request(contract, side, price, quantity, **terms) -> OrderRequest:
        return OrderRequest(client_order_id=f"b{next(serial)}", contract=contract, side=side,
                            kind=terms.pop("kind", "limit"), price=D(price), quantity=quantity,
                            leverage=terms.pop("leverage", D(1)), margin_mode=terms.pop("margin_mode", "cross"),
                            **terms)

    def submit(client, requests: list[OrderRequest]) -> None:
        for entered in orders_submit(client=client, requests=requests, now=utcnow(), validate_later=False):
            assert not isinstance(entered, Exception), entered

    def match(contract_id: int) -> int:
        taken = 0
        while step := book_match(contract_id=contract_id, now=utcnow()):
            taken += step
        return taken

    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()

    def timed(fn, profiled=True):
        w, c = time.perf_counter(), time.process_time()
        if profiler and profiled:
            profiler.enable()
        out = fn()
        if profiler and profiled:
            profiler.disable()
        return out, (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000

    def ladder(contract, maker, total: D) -> None:
        each = max(contract.lot_size, (total / LADDER_LEVELS).quantize(contract.lot_size))
        submit(maker, [request(contract, "buy", LADDER_TOP - LADDER_STEP * k, each) for k in range(LADDER_LEVELS)])
        match(contract.pk)

    def run(index: int, size: int) -> dict:
        t0 = time.perf_counter()
        now = utcnow()
        usd = Currency.objects.create(symbol=f"U{index}", name="bench collateral", decimals=6)
        base = Currency.objects.create(symbol=f"B{index}", name="bench base", decimals=8)
        pair = Pair.objects.create(base=base, quote=usd)
        contract = perpetual_list(pair=pair, collateral=usd, tick_size=D("0.5"), lot_size=D("0.001"),
                                  floor_px=D(1000), cap_px=D(1000000), tiers=tiers, liquidation_fee_rate=D("0.002"),
                                  funding_cap=D("0.0075"), now=now)
        quote(pair, "binance", "50000", now)
        perpetual_marks_update(now=now)
        fund = insurance_fund_client(now=now)
        insurance_fund_locks(currency_ids=[usd.pk], now=now)
        FundLock.objects.filter(client=fund, currency=usd).update(fundlock=D(args.fund * size))

        # The clients' terms, their deposits, the maker's resting liquidity for exactly what they take.
        terms = []
        for _ in range(size):
            side = "buy" if rng.random() < 0.75 else "sell"
            mode = rng.choice(["isolated", "cross"])
            leverage = D(rng.choice(LEVERAGES))
            quantity = (D(rng.randint(2000, 20000)) / 50000).quantize(D("0.001"))
            price = D(50100) if side == "buy" else D(49900)
            buffer = D(rng.uniform(0, 0.5 if mode == "isolated" else 0.1)).quantize(D("0.0001"))
            terms.append((side, mode, leverage, quantity, price, (quantity * price / leverage * (1 + buffer) + 1)
                          .quantize(D(1))))
        maker = clients_make([D(10**12)], usd)[0]
        clients = clients_make([t[5] for t in terms], usd)
        resting = []
        for side, levels in (("sell", range(50000, 50051, 5)), ("buy", range(49950, 50000, 5))):
            total = sum(t[3] for t in terms if t[0] == ("buy" if side == "sell" else "sell"))
            each = (total / len(levels)).quantize(D("0.001"))
            quantities = [each] * (len(levels) - 1) + [total - each * (len(levels) - 1)]
            resting += [request(contract, side, p, q) for p, q in zip(levels, quantities, strict=True)]
        submit(maker, resting)
        match(contract.pk)
        for client, (side, mode, leverage, quantity, price, _) in zip(clients, terms, strict=True):
            submit(client, [request(contract, side, price, quantity, leverage=leverage, margin_mode=mode)])
        match(contract.pk)
        opened = Position.objects.filter(contract=contract, client__in=clients).exclude(quantity=0).count()
        assert opened == size, (opened, size, list(Order.objects.filter(contract=contract).exclude(
            state="filled").values_list("side", "quantity", "filled_quantity", "leverage", "margin_mode", "state",
                                        "reject_reason", "price")[:5]))
        long_total = sum(t[3] for t in terms if t[0] == "buy")
        ladder_total = long_total * D(str(args.ladder))
        ladder(contract, maker, ladder_total)
        perpetual_marks_update(now=utcnow())
        setup_s = time.perf_counter() - t0
        log(f"size {size}: set-up {setup_s:.1f} s")

        # The crash tick.
        at = utcnow()
        quote(pair, "binance", "49000", at)
        perpetual_marks_update(now=at)
        perpetual = Perpetual.objects.get(contract=contract)
        mark = mark_fresh(perpetual, now=at)

        def identify():
            with transaction.atomic():
                isolated = isolated_candidates(contract=contract, perpetual=perpetual, mark=mark, exclude={fund.pk})
                cross, _ = cross_candidates(contract=contract, perpetual=perpetual, mark=mark, exclude={fund.pk},
                                            now=utcnow())
            return isolated, cross

        (isolated, cross), identify_ms, identify_cpu = timed(identify)
        first, enter_ms, enter_cpu = timed(lambda: perpetual_liquidations_run(contract_id=contract.pk,
                                                                                now=utcnow()))

        def tick() -> None:
            """The next spot load at the same index (the beat's, every CCP_SPOT_INTERVAL_SECONDS)."""
            quote(pair, "binance", "49000", utcnow())
            perpetual_marks_update(now=utcnow())

        def check() -> list:
            """The next check. The mark stale (the checks before took longer than CCP_SPOT_STALE_AFTER: the check
            would do nothing) or the check refused ``client_order_id_reused`` (the fund's unwind order after a
            partial fill, asked again at the same mark: see the report): the next price tick first."""
            if mark_fresh(Perpetual.objects.get(contract=contract), now=utcnow()) is None:
                stale.append(1)
                tick()
            try:
                return perpetual_liquidations_run(contract_id=contract.pk, now=utcnow())
            except ApplicationError as refused:
                if refused.code != "client_order_id_reused":
                    raise
                reticks.append(str(refused))
            tick()
            return check()

        reticks: list[str] = []
        stale: list[int] = []

        def book():
            checks, matched, steps = 0, 0, []
            while True:
                matched += match(contract.pk)
                if checks == args.rounds:
                    break
                found = check()
                checks += 1
                steps += found
                if not found:
                    matched += match(contract.pk)  # the fund's unwind order, if any
                    break
            return checks, matched, steps

        (checks, matched, later), book_ms, book_cpu = timed(book)
        total_ms = identify_ms + enter_ms + book_ms
        rows = list(Liquidation.objects.filter(contract=contract).select_related("order").order_by("id"))
        kinds = Counter(r.kind for r in rows)
        liquidated = len({r.client_id for r in rows if r.client_id != fund.pk})
        log(f"size {size}: found {len(isolated) + len(cross)}, steps {dict(kinds)}, total {total_ms:.0f} ms")

        # Baseline: as many plain reduce-only market sells of untouched long clients, against the same ladder.
        touched = {r.client_id for r in rows} | {r.counterparty_id for r in rows}
        orders = [r.order for r in rows if r.kind == "order"]
        longs = list(Position.objects.filter(contract=contract, client__in=clients, quantity__gt=0)
                     .exclude(client_id__in=touched).select_related("client").order_by("id")[:len(orders)])
        ladder(contract, maker, ladder_total)
        for position, order in zip(longs, orders, strict=False):
            submit(position.client, [request(contract, "sell", order.price, min(order.quantity, position.quantity),
                                             kind="market", time_in_force="ioc", reduce_only=True)])
        baseline, base_ms, base_cpu = timed(lambda: match(contract.pk), profiled=False)
        fills = Order.objects.filter(pk__in=[o.pk for o in orders]).aggregate(s=Sum("filled_quantity"))["s"] or 0

        # Checks.
        failures = []
        positions = Position.objects.filter(contract=contract).aggregate(s=Sum("quantity"))["s"] or 0
        if positions != 0:
            failures.append(f"positions sum to {positions}")
        negative = {str(k): str(v) for k, v in equities(contract).items() if v < 0 and k[0] != fund.pk}
        if negative:
            failures.append(f"negative equity left uncovered: {dict(list(negative.items())[:5])} "
                            f"({len(negative)} in all)")
        return {"positions": size, "found": len(isolated) + len(cross), "isolated": len(isolated),
                "cross": len(cross), "mark": str(mark), "steps": dict(kinds), "first_steps": len(first),
                "later_steps": len(later), "checks": checks, "reticks": len(reticks), "stale": len(stale),
                "matched": matched, "liquidated": liquidated,
                "liquidation_orders": len(orders), "liquidation_filled": str(fills),
                "identify_ms": identify_ms, "identify_cpu": identify_cpu, "enter_ms": enter_ms,
                "enter_cpu": enter_cpu, "book_ms": book_ms, "book_cpu": book_cpu, "total_ms": total_ms,
                "baseline_orders": min(len(longs), len(orders)), "baseline_taken": baseline,
                "baseline_ms": base_ms, "baseline_cpu": base_cpu, "setup_s": setup_s, "failures": failures}

    results = {size: run(i, size) for i, size in enumerate(args.sizes, start=1)}
    failures = [f"size {size}: {f}" for size, r in results.items() for f in r.pop("failures")]
    cash = CashMovement.objects.aggregate(s=Sum("amount"))["s"] or 0
    if cash != 0:
        failures.append(f"cash movements sum to {cash}")
    fund = insurance_fund_client(now=utcnow())
    below = sum(1 for f in FundLock.objects.exclude(client=fund) if available(f) < 0)
    if below:
        failures.append(f"{below} fund locks below zero available")
    report = invariants_check()
    if not report.ok:
        failures.append(f"invariants: {report.violations}")
    print(RESULT_MARK + json.dumps({"results": results, "failures": failures}), flush=True)
    if profiler:
        import pstats
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(60)


def report(out: dict) -> None:
    print("Booking a 2% crash tick's liquidations (identify, enter, book until a check enters nothing); wall ms "
          "(CPU ms of this process)")
    print(f"{'positions':>9} {'found':>6} {'order':>5} {'takeov':>6} {'adl':>5} {'identify':>14} {'enter':>16} "
          f"{'book':>16} {'total':>8} {'ms/liq':>7} {'checks':>6} {'baseline':>14} {'ratio':>6} {'set-up s':>8}")
    for r in out["results"].values():
        steps = r["steps"]
        print(f"{r['positions']:>9} {r['found']:>6} {steps.get('order', 0):>5} {steps.get('takeover', 0):>6} "
              f"{steps.get('adl', 0):>5} {r['identify_ms']:>7.0f} ({r['identify_cpu']:>4.0f}) "
              f"{r['enter_ms']:>8.0f} ({r['enter_cpu']:>5.0f}) {r['book_ms']:>8.0f} ({r['book_cpu']:>5.0f}) "
              f"{r['total_ms']:>8.0f} {r['total_ms'] / max(r['liquidated'], 1):>7.2f} {r['checks']:>6} "
              f"{r['baseline_ms']:>6.0f} ({r['baseline_cpu']:>5.0f}) {r['total_ms'] / r['baseline_ms']:>6.1f} "
              f"{r['setup_s']:>8.1f}")
    for r in out["results"].values():
        print(f"  {r['positions']}: mark {r['mark']}, found {r['isolated']} isolated + {r['cross']} cross, "
              f"{r['liquidated']} positions liquidated, {r['first_steps']} steps at the first check and "
              f"{r['later_steps']} after, {r['reticks']} checks refused client_order_id_reused and "
              f"{r['stale']} found the mark stale (a new tick then), "
              f"{r['matched']} orders matched in 'book'; {r['liquidation_orders']} "
              f"liquidation orders filled {r['liquidation_filled']}; baseline {r['baseline_orders']} reduce-only "
              f"market orders ({r['baseline_taken']} taken by the matcher)")
    print("ms/liq = total / positions liquidated; ratio = total / baseline (the matcher booking as many plain "
          "reduce-only market orders against the same ladder)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="open positions per run, comma-separated")
    parser.add_argument("--ladder", type=float, default=0.05, help="the bid ladder's share of the long quantity")
    parser.add_argument("--fund", type=int, default=10, help="the insurance fund's USDC per position")
    parser.add_argument("--rounds", type=int, default=10, help="at most this many checks after the first")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--pg-port", type=int, default=25621)
    parser.add_argument("--redis-port", type=int, default=26621)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-liquidation-book",
                        help="PostgreSQL data and logs (wiped at each start)")
    parser.add_argument("--profile", action="store_true",
                        help="print the cProfile of the measured phases (identify, enter, book; not the baseline)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if args.child:
        child(args)
        return 0
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--sizes", ",".join(map(str, args.sizes)),
            "--ladder", str(args.ladder), "--fund", str(args.fund), "--rounds", str(args.rounds),
            "--seed", str(args.seed)] + (["--profile"] if args.profile else [])
    if (done := child_run(args, argv, mark=RESULT_MARK, timeout=3600)) is None:
        return 1
    run, line = done
    sys.stderr.write(run.stderr[-6000:])
    out = json.loads(line[len(RESULT_MARK):])
    report(out)
    if args.profile:
        print(run.stdout.split(line, 1)[1])
    for failure in out["failures"]:
        print(f"FAILED: {failure}")
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
