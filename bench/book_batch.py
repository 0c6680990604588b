"""The continuous matcher's cost per batch: ``ccp.book.services.books_match`` alone through a real PostgreSQL,
with a same-run baseline.

``--contracts`` continuous BTC/USDC futures (default 1; floor 50,000, cap 150,000, tick 1, lot 0.01, expiries
a week apart, all of one matcher queue), 100 clients with 10^9 USDC each, each book seeded with 400 resting
orders around 100,000 (matched, not measured). Then for each batch size (``--sizes``, default 1, 10, 100,
200) ``--batches`` batches (default: enough for about 600 orders, at least 10), each:

1. baseline: the batch's orders inserted as 'received' (one COPY, its own transaction: the bare cost of
   storing them), timed; with several contracts, the orders go to each contract in turn;
2. the matcher called directly, as its task calls it (commit and after-commit pushes to Redis included):
   ``books_match(contract_id=<the first>, now=..., limit=size, queues=1)``, one run over every contract
   with orders; with ``--per-contract`` (or on a tree without ``books_match``) ``book_match`` once per
   contract, one transaction each, as before issue 12. Timed wall and CPU of this process (the Python
   side; PostgreSQL's own CPU is in the wall time), with the SQL statements it sent counted
   (``connection.execute_wrapper``, plus the COPYs of ``ccp.db``) and the engine's own time
   (``Engine.apply``) summed.

The mix (``--seed``): 70% limit orders that rest (1 to 50 ticks behind the middle), 18% limit orders
that cross (up to 20 ticks through the middle: they take one or more levels, a leftover rests), 7%
market orders (immediate or cancel, protected 30 ticks through), 5% resting entries carrying a
take-profit and a stop-loss on the last trade price (they arm when the entry fills, and fire as trades
move the price). 1 to 5 lots each, clients at random.

Prints, per size: the median per batch of wall, CPU, PostgreSQL CPU (its backend's, from
``/proc/<pid>/schedstat``: what the run's statements and commit cost it) and engine ms, per order ms (median
batch / size), statements per batch, trades per batch, the baseline's ms per batch and the ratio wall / baseline. The
database is checked at the end (cash movements sum to zero, positions sum to zero, no fund lock below
zero available, the invariants checker). Everything started here is stopped at the end.

Run from the repository root (about a minute on 2 cores):

    .venv/bin/python bench/book_batch.py [--sizes 1,10,100,200] [--batches N] [--profile]
    .venv/bin/python bench/book_batch.py --contracts 4 --sizes 4,12,40 [--per-contract]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULT_MARK = "BENCH-BOOK-BATCH-JSON "
MID, FLOOR, CAP = 100000, 50000, 150000
CLIENTS, SEED_ORDERS = 100, 400


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def order_mix(rng: random.Random, n: int) -> list[dict]:
    """``n`` orders' terms (see the module docstring)."""
    out = []
    for _ in range(n):
        side = rng.choice(("buy", "sell"))
        sign = 1 if side == "buy" else -1
        roll = rng.random()
        terms = {"side": side, "kind": "limit", "time_in_force": "gtc", "attached": None,
                 "quantity": rng.randint(1, 5)}
        if roll < 0.70:
            terms["price"] = MID - sign * rng.randint(1, 50)
        elif roll < 0.88:
            terms["price"] = MID + sign * rng.randint(1, 20)
        elif roll < 0.95:
            terms.update(kind="market", time_in_force="ioc", price=MID + sign * 30)
        else:
            price = MID - sign * rng.randint(1, 10)
            terms.update(price=price, attached={
                "tp": {"trigger_price": str(price + sign * 40), "price": str(price + sign * 30), "kind": "market",
                       "trigger_source": "last"},
                "sl": {"trigger_price": str(price - sign * 40), "price": str(price - sign * 50), "kind": "limit",
                       "trigger_source": "last"}})
        out.append(terms)
    return out


def continuous_market(n_clients: int, now, n_contracts: int = 1):
    """``n_contracts`` continuous BTC/USDC futures (floor 50,000, cap 150,000, tick 1, lot 0.01; expiries a
    week apart) and ``n_clients`` clients with 10^9 USDC each: (contracts, clients). Django set up."""
    from datetime import date, timedelta
    from decimal import Decimal

    from ccp.accounts.models import Client, FundLock
    from ccp.contracts.models import Contract, ContractState, Currency, Pair, TradingMode

    usdc = Currency.objects.create(symbol="USDC", name="USD Coin", decimals=6)
    btc = Currency.objects.create(symbol="BTC", name="Bitcoin", decimals=8)
    pair = Pair.objects.create(base=btc, quote=usdc)
    contracts = []
    for n in range(n_contracts):
        expiry = date(now.year + 1, 6, 25) + timedelta(days=7 * n)
        contracts.append(Contract.objects.create(
            symbol=Contract.symbol_for(pair=pair, expiry_date=expiry, kind="future", strike_px=None), pair=pair,
            collateral=usdc, kind="future", strike_px=None, expiry_date=expiry, floor_px=Decimal(FLOOR),
            cap_px=Decimal(CAP), tick_size=Decimal(1), lot_size=Decimal("0.01"), state=ContractState.LISTED,
            trading_mode=TradingMode.CONTINUOUS))
    clients = Client.objects.bulk_create([Client(address=f"0x{k:040x}", registered_at=now)
                                          for k in range(1, n_clients + 1)])
    FundLock.objects.bulk_create([FundLock(client=c, currency=usdc, fundlock=Decimal(10**9), updated_at=now)
                                  for c in clients])
    return contracts, clients


def child(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from decimal import Decimal

    from django.db import connection, transaction
    from django.db.models import Sum
    from psycopg.types.json import Jsonb

    import ccp.db
    from ccp.accounts.models import FundLock
    from ccp.book import services
    from ccp.book.engine import Engine
    from ccp.book.services import book_match
    from ccp.clearing.models import Trade
    from ccp.clock import utcnow
    from ccp.db import bulk_insert_rows
    from ccp.orders.models import Order
    from ccp.risk.collateral import available
    from ccp.risk.models import Position
    from ccp.settlement.models import CashMovement
    from ccp.system.invariants import invariants_check

    rng = random.Random(args.seed)
    now = utcnow()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def backend_cpu() -> float:
        """The PostgreSQL backend's CPU seconds so far (``/proc/<pid>/schedstat``: nanoseconds on a CPU)."""
        with open(f"/proc/{backend}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    contracts, clients = continuous_market(CLIENTS, now, args.contracts)
    contract = contracts[0]
    # One run over every contract with work (the matcher task's run, ``books_match``), or, with --per-contract
    # or on a tree without it, one ``book_match`` transaction per contract, as each contract's own task did.
    books_match = None if args.per_contract else getattr(services, "books_match", None)

    def match(limit: int) -> int:
        if books_match is not None:
            return sum(books_match(contract_id=contract.pk, now=utcnow(), limit=limit, queues=1).values())
        return sum(book_match(contract_id=c.pk, now=utcnow(), limit=limit) for c in contracts)

    serial = iter(range(1, 10**9))

    def insert(terms: list[dict]) -> float:
        """Store orders as received (one COPY, one transaction); returns the seconds taken."""
        at = utcnow()
        rows = [{"client_id": rng.choice(clients).pk, "contract_id": contracts[n % len(contracts)].pk,
                 "client_order_id": f"b{n}",
                 "price": Decimal(t["price"]), "quantity": Decimal(t["quantity"]) / 100,
                 "attached": None if t["attached"] is None else Jsonb(t["attached"]),
                 **{k: v for k, v in t.items() if k not in ("price", "quantity", "attached")}}
                for t, n in zip(terms, serial, strict=False)]  # the contracts in turn (terms first: no number lost)
        defaults = {f.attname: f.get_default() for f in Order._meta.concrete_fields if not f.primary_key}
        rows = [{**defaults, "state": "received", "created_at": at, "updated_at": at, **row} for row in rows]
        t0 = time.perf_counter()
        with transaction.atomic():
            bulk_insert_rows(Order, rows)
        return time.perf_counter() - t0

    # Counters: statements through Django's cursor, COPYs of ccp.db, the engine's time.
    counts = {"statements": 0, "copies": 0, "engine_s": 0.0}
    shown: list[str] = []

    def counting(execute, sql, params, many, context):
        counts["statements"] += 1
        shown.append(" ".join(sql.split())[:160])
        return execute(sql, params, many, context)

    copy = ccp.db._copy

    def counted_copy(*a, **k):
        counts["copies"] += 1
        return copy(*a, **k)

    ccp.db._copy = counted_copy
    apply = Engine.apply

    def timed_apply(self, command):
        t = time.perf_counter()
        try:
            return apply(self, command)
        finally:
            counts["engine_s"] += time.perf_counter() - t

    Engine.apply = timed_apply

    # The seeded book (resting orders only), matched and not measured.
    insert([t for t in order_mix(rng, 3 * SEED_ORDERS * len(contracts)) if t["kind"] == "limit" and not t["attached"]
            and (t["price"] < MID) == (t["side"] == "buy")][:SEED_ORDERS * len(contracts)])
    while match(200):
        pass

    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile(time.process_time)  # CPU, not the waits on PostgreSQL
    results = {}
    for size in args.sizes:
        batches = args.batches or max(10, 600 // size)
        rows = []
        for _ in range(batches):
            baseline = insert(order_mix(rng, size))
            trades_before = Trade.objects.count()
            counts.update(statements=0, copies=0, engine_s=0.0)
            shown.clear()
            if profiler:
                profiler.enable()
            with connection.execute_wrapper(counting):
                w0, c0, p0 = time.perf_counter(), time.process_time(), backend_cpu()
                taken = match(size)
                wall, cpu, pg = time.perf_counter() - w0, time.process_time() - c0, backend_cpu() - p0
            if profiler:
                profiler.disable()
            assert taken == size, (taken, size)
            if args.statements and len(rows) < 3:
                print(f"-- size {size}, batch {len(rows) + 1}:", *shown, sep="\n  ", file=sys.stderr)
            rows.append({"wall": wall, "cpu": cpu, "pg": pg, "engine": counts["engine_s"], "baseline": baseline,
                         "statements": counts["statements"] + counts["copies"],
                         "trades": Trade.objects.count() - trades_before})
        med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        results[size] = {"batches": batches, **{f"{k}_ms": v * 1000 for k, v in med.items()
                                                if k in ("wall", "cpu", "pg", "engine", "baseline")},
                         "cpu_mean_ms": statistics.mean(r["cpu"] for r in rows) * 1000,
                         "pg_mean_ms": statistics.mean(r["pg"] for r in rows) * 1000,
                         "statements": med["statements"], "trades_mean": statistics.mean(r["trades"] for r in rows),
                         "wall_p90_ms": sorted(r["wall"] for r in rows)[int(0.9 * (len(rows) - 1))] * 1000}
        log(f"size {size}: {json.dumps(results[size])}")

    # Checks: conservation, collateral, the invariants checker.
    failures = []
    cash = CashMovement.objects.aggregate(s=Sum("amount"))["s"] or 0
    if cash != 0:
        failures.append(f"cash movements sum to {cash}")
    for c in contracts:
        positions = Position.objects.filter(contract=c).aggregate(s=Sum("quantity"))["s"] or 0
        if positions != 0:
            failures.append(f"positions of {c.symbol} sum to {positions}")
    if any(available(f) < 0 for f in FundLock.objects.all()):
        failures.append("a fund lock below zero available")
    report = invariants_check()
    if not report.ok:
        failures.append(f"invariants: {report}")
    out = {"results": results, "failures": failures, "contracts": len(contracts),
           "mode": "one run" if books_match is not None else "one transaction per contract",
           "orders": Order.objects.count(), "trades": Trade.objects.count()}
    print(RESULT_MARK + json.dumps(out), flush=True)
    if profiler:
        import pstats
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(90)


def load_stack():
    spec = importlib.util.spec_from_file_location("ccp_bin_stack", REPO / "bin" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def child_run(args, argv: list[str], *, mark: str, timeout: int,
              stderr: bool = True) -> tuple[subprocess.CompletedProcess, str] | None:
    """A bench's parent side: its own PostgreSQL and Redis started fresh (``args.pg_port``, ``args.redis_port``,
    ``args.state_dir``), migrated, then ``argv`` (the bench in ``--child`` mode) run against them; everything
    stopped at the end. Returns the run and its result line (the stdout line starting with ``mark``), or None
    after logging why not. ``stderr``: capture the child's (else it goes to the terminal as it comes)."""
    os.environ["CCP_STATE_DIR"] = args.state_dir
    stack = load_stack()
    log(f"starting PostgreSQL :{args.pg_port} and Redis :{args.redis_port} in {stack.state_dir('bench')}")
    with stack.services("bench", args.pg_port, args.redis_port, fresh=True) as svc_env:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ccp.settings", **svc_env, "PYTHONUNBUFFERED": "1",
               "CCP_DEBUG": "0"}
        step = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        if step.returncode:
            log(f"migrate failed:\n{(step.stdout + step.stderr)[-3000:]}")
            return None
        run = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE if stderr else None, text=True, timeout=timeout)
    line = next((x for x in run.stdout.splitlines() if x.startswith(mark)), None)
    if run.returncode or line is None:
        if run.stderr:
            sys.stderr.write(run.stderr[-6000:])
        log(f"child failed ({run.returncode}):\n{run.stdout[-3000:]}")
        return None
    return run, line


def report(out: dict) -> None:
    print(f"the matcher alone, {out.get('contracts', 1)} continuous contract(s), {out.get('mode', 'one run')} "
          f"({out['orders']} orders, {out['trades']} trades in the run)")
    print(f"{'size':>5} {'batches':>7} {'wall ms':>8} {'p90':>7} {'cpu ms':>7} {'engine':>7} {'wall/ord':>8} "
          f"{'cpu/ord':>8} {'pg ms':>7} {'pg/ord':>7} {'stmts':>6} {'trades':>6} {'insert ms':>9} {'ratio':>6}")
    for size, r in out["results"].items():
        n = int(size)
        print(f"{n:>5} {r['batches']:>7} {r['wall_ms']:>8.2f} {r['wall_p90_ms']:>7.2f} {r['cpu_ms']:>7.2f} "
              f"{r['engine_ms']:>7.2f} {r['wall_ms'] / n:>8.3f} {r['cpu_ms'] / n:>8.3f} {r['pg_ms']:>7.2f} "
              f"{r['pg_ms'] / n:>7.3f} {r['statements']:>6.0f} "
              f"{r['trades_mean']:>6.1f} {r['baseline_ms']:>9.2f} {r['wall_ms'] / r['baseline_ms']:>6.1f}")
    print("medians per batch; wall/ord, cpu/ord, pg/ord = median batch / size; pg: the PostgreSQL backend's CPU "
          "(/proc/<pid>/schedstat); stmts: SQL statements (COPY included); insert: the bare COPY of the batch's "
          "orders (baseline); ratio = wall / insert")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="1,10,100,200", help="orders per batch, comma-separated")
    parser.add_argument("--batches", type=int, default=0, help="batches per size (0: about 600 orders, at least 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--contracts", type=int, default=1,
                        help="continuous contracts (one queue) the orders of each batch alternate over")
    parser.add_argument("--per-contract", action="store_true",
                        help="match each contract in its own transaction (book_match), not one run over all")
    parser.add_argument("--profile", action="store_true", help="print the cumulative cProfile of the measured calls")
    parser.add_argument("--statements", action="store_true",
                        help="print the SQL statements of each size's first three batches (COPYs not shown)")
    parser.add_argument("--pg-port", type=int, default=25951)
    parser.add_argument("--redis-port", type=int, default=26951)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-book-batch",
                        help="PostgreSQL data and logs (wiped at each start)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if args.child:
        child(args)
        return 0
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--sizes", ",".join(map(str, args.sizes)),
            "--batches", str(args.batches), "--seed", str(args.seed), "--contracts", str(args.contracts)]
    argv += ["--profile"] if args.profile else []
    argv += ["--per-contract"] if args.per_contract else []
    argv += ["--statements"] if args.statements else []
    if (done := child_run(args, argv, mark=RESULT_MARK, timeout=1200)) is None:
        return 1
    run, line = done
    if args.statements:
        sys.stderr.write(run.stderr)
    out = json.loads(line[len(RESULT_MARK):])
    report(out)
    if args.profile:
        print(run.stdout.split(line, 1)[1])
    for failure in out["failures"]:
        print(f"FAILED: {failure}")
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
