"""Batch auction benchmark: the clearing engine alone and end to end through the database, with a
same-run baseline (the pure uncross of the same orders: numpy sort and cumulate per contract).

For each size (``--sizes``, default 1000, 10000, 100000 orders over 20 contracts and 2000 clients,
``--bound-share`` of whose collateral binds, 5% by default: they hold a third of what their orders could
cost; ``bench/auction_book.py``):

1. engine, with binding clients: ``clear()`` of the generated book, its phases (reduce, build, LP,
   MIP, exact stage), status, welfare, certified upper bound and gap; ``verify()`` must pass
   (every fill whole lots inside its limit at the uniform price, balanced, collateral fits);
2. baseline: the pure uncross of the same orders without collateral (AuctionInput -> numpy arrays,
   then per contract demand/supply cumulative curves over the price levels, crossing volume, price
   and welfare); best of 3; the ratio engine total / baseline;
3. database, live book: a throw-away PostgreSQL + Redis (``bin/stack.py``'s ``services``, ports
   25901/26901, state in /var/tmp/ccp-bench-auction, wiped at each start), migrated once; per size a
   child process empties the ccp tables, bulk-loads the same book (contracts, 2000 clients with fund
   locks, the orders as 'accepted' with their worst-case order value) and times auction_open,
   auction_close, auction_solve and auction_apply called directly, then checks conservation (cash
   movements of the auction sum to 0, positions per contract sum to 0, no fund lock below zero
   available, fund locks' order value = their open orders' order value) and re-verifies the stored
   result. The close writes each client's budget as its orders' order value plus its lockups, which
   never binds; with ``--bound-share`` above 0 the stored input's budgets are then replaced by the
   generated book's (not timed), so the database run clears the same bound book as the engine run
   (``--bound-share 0``: the live book, whose welfare must equal the baseline's). Last, the stored
   input is cleared again while a process per core burns CPU: the result must be the stored one.

The database run also splits auction_apply into its parts (timers around the product functions,
in the child process only; the booking's writes run on a thread beside its computing, so the parts overlap), and
reports the CPU seconds of each stage: the child process (every thread), its PostgreSQL backend and the whole
server (every backend, those that ended included), from /proc: steadier than wall-clock time on a shared host.
Prints one table per size and a summary with the targets (100k orders end to end, database
included, under 10 s; welfare within 0.5% of the certified bound, never below the fallback; the same result on a
replay under load). Exits non-zero when a check fails.
Everything started here is stopped at the end, also on Ctrl-C, SIGTERM or an error.

Run from the repository root (the defaults take about three and a half minutes on 2 cores):

    .venv/bin/python bench/auction.py [--sizes 1000,10000,100000] [--no-db] [--profile]

``--profile`` adds, for the largest size, a second database run under cProfile and prints the top
cumulative entries of auction_close, auction_solve and auction_apply (not used for the figures); the
whole profiles go to ``<state dir>/logs/profile-<stage>-<orders>.prof``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.auction_book import book  # noqa: E402
from ccp.matching.engine import SOLVER, _prepare, clear, verify  # noqa: E402

RESULT_MARK = "BENCH-AUCTION-JSON "
CONTRACTS, CLIENTS = 20, 2000
TARGET_E2E_S, TARGET_GAP = 10.0, Decimal("0.005")  # issue 14: welfare at least 99.5% of the certified bound
BINDING_SHARE = 0.05  # --bound-share


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# Baseline: the pure uncross, numpy sort and cumulate per contract (no collateral)
# --------------------------------------------------------------------------------------------------

def numpy_uncross(auction) -> dict:
    """Per contract: price levels (sorted unique limits, in ticks), demand D(p) = buy lots with limit
    >= p and supply S(p) = sell lots with limit <= p by cumulative sums, volume max min(D, S) at the
    level with the most volume, then the least imbalance, then nearest the reference price. Welfare:
    the best ``volume`` buy lots minus the cheapest ``volume`` sell lots, at their limits (exact ints)."""
    t0 = time.perf_counter()
    index = {c.symbol: j for j, c in enumerate(auction.contracts)}
    ticks = [c.tick for c in auction.contracts]
    lots_of = [c.lot for c in auction.contracts]
    orders = auction.orders
    contract = np.fromiter((index[o.contract] for o in orders), np.int64, len(orders))
    buy = np.fromiter((o.side == "buy" for o in orders), np.bool_, len(orders))
    price = np.fromiter((int(o.price / ticks[j]) for o, j in zip(orders, contract.tolist(), strict=True)),
                        np.int64, len(orders))
    lots = np.fromiter((int(o.quantity / lots_of[j]) for o, j in zip(orders, contract.tolist(), strict=True)),
                       np.int64, len(orders))
    t1 = time.perf_counter()
    by_contract = np.argsort(contract, kind="stable")
    bounds = np.searchsorted(contract[by_contract], np.arange(len(ticks) + 1))
    volume, welfare_ticks, prices = [], [], []
    for j in range(len(ticks)):
        sel = by_contract[bounds[j]:bounds[j + 1]]
        p, q, b = price[sel], lots[sel], buy[sel]
        levels, at = np.unique(p, return_inverse=True)  # the sort
        bids = np.bincount(at[b], q[b], len(levels)).astype(np.int64)
        asks = np.bincount(at[~b], q[~b], len(levels)).astype(np.int64)
        demand = bids[::-1].cumsum()[::-1]  # buy lots willing at >= level
        supply = asks.cumsum()  # sell lots willing at <= level
        traded = np.minimum(demand, supply)
        v = int(traded.max()) if len(levels) else 0
        volume.append(v)
        if v == 0:
            welfare_ticks.append(0)
            prices.append(None)
            continue
        best = np.flatnonzero(traded == v)
        imbalance = np.abs(demand[best] - supply[best])
        best = best[imbalance == imbalance.min()]
        ref = auction.contracts[j].reference_price
        target = int(ref / ticks[j]) if ref is not None else int(levels[best].mean())
        prices.append(int(levels[best[np.argmin(np.abs(levels[best] - target))]]) * ticks[j])

        def top(lots_by_level, level_px, v=v):  # value of the first v lots, in the order given
            before = lots_by_level.cumsum() - lots_by_level
            return int((np.clip(v - before, 0, lots_by_level) * level_px).sum())

        welfare_ticks.append(top(bids[::-1], levels[::-1]) - top(asks, levels))
    t2 = time.perf_counter()
    welfare = sum((w * ticks[j] * lots_of[j] for j, w in enumerate(welfare_ticks)), Decimal(0))
    return {"prep_s": t1 - t0, "core_s": t2 - t1, "total_s": t2 - t0, "welfare": welfare,
            "volume_lots": sum(volume), "contracts_traded": sum(1 for v in volume if v)}


# --------------------------------------------------------------------------------------------------
# Engine (with binding clients) and baseline, in this process
# --------------------------------------------------------------------------------------------------

def run_engine(n: int, seed: int, time_limit: str) -> dict:
    t0 = time.perf_counter()
    auction = book(n, contract_count=CONTRACTS, clients=CLIENTS, binding_share=BINDING_SHARE, seed=seed,
                   time_limit_s=time_limit)
    generate_s = time.perf_counter() - t0
    result = clear(auction)
    t0 = time.perf_counter()
    problem = verify(_prepare(auction), result)
    verify_s = time.perf_counter() - t0
    if problem:
        raise RuntimeError(f"{n} orders: verify() rejects the engine's result: {problem}")
    baseline = min((numpy_uncross(auction) for _ in range(3)), key=lambda r: r["total_s"])
    if result.upper_bound > baseline["welfare"] * (1 + Decimal("1e-9")):
        raise RuntimeError(f"{n} orders: upper bound {result.upper_bound} above the no-collateral welfare "
                           f"{baseline['welfare']}")
    binding_trading = {o.client for o in auction.orders} & set(result.binding_clients)
    return {
        "orders": n, "generate_s": generate_s, "verify_s": verify_s, "timings": dict(result.timings),
        "status": result.status, "method": result.method, "welfare": result.welfare,
        "upper_bound": result.upper_bound, "gap": result.gap, "binding": len(binding_trading),
        "fallback_welfare": result.fallback_welfare, "candidates": dict(result.candidates),
        "terminations": dict(result.terminations), "time_guard": result.time_guard,
        "fills": len(result.fills), "contracts_traded": len(result.prices), "baseline": baseline,
    }


# --------------------------------------------------------------------------------------------------
# Database: child process with Django set up against the services' database
# --------------------------------------------------------------------------------------------------

def db_child(n: int, seed: int, time_limit: str, profile: bool) -> None:
    import hashlib
    from collections import defaultdict
    from datetime import UTC, date, datetime, timedelta
    from decimal import ROUND_UP

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from django.apps import apps
    from django.db import connection, transaction
    from django.db.models import F, Sum

    from ccp.accounts.models import Client, FundLock
    from ccp.clock import utcnow
    from ccp.contracts.models import Contract, ContractState, Currency, Pair
    from ccp.contracts.payoffs import order_worst_cost
    from ccp.matching.auction import AuctionResult, AuctionSettings, Fill, input_from_document
    from ccp.matching.models import Auction
    from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
    from ccp.money import money_str, quantize
    from ccp.orders.models import Order
    from ccp.orders.states import BOOK_STATES, OrderState
    from ccp.prices.models import ReferencePrice, ReferencePriceKind
    from ccp.risk.models import Position
    from ccp.settlement.models import CashMovement

    out: dict = {"orders": n}
    auction_in = book(n, contract_count=CONTRACTS, clients=CLIENTS, binding_share=BINDING_SHARE, seed=seed,
                      time_limit_s=time_limit)
    expiries = {c.portfolio: date.fromisoformat(c.portfolio.rsplit(" ", 1)[1]) for c in auction_in.contracts}
    # The book's contracts have fixed expiries; after the first one's trading halt, run at a fixed time.
    shift = timedelta(0)
    if utcnow().date() >= min(expiries.values()) - timedelta(days=1):
        shift = datetime(2026, 11, 21, 12, tzinfo=UTC) - utcnow()
        out["simulated_clock"] = True

    def now() -> datetime:
        return utcnow() + shift

    # --- empty the ccp tables (the previous size's run), ids restart at 1
    t0 = time.perf_counter()
    tables = [m._meta.db_table for cfg in apps.get_app_configs() if cfg.name.startswith("ccp.")
              for m in cfg.get_models(include_auto_created=True)]
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(connection.ops.quote_name(t) for t in tables)
                       + " RESTART IDENTITY CASCADE")
    # --- load the book
    at = now()
    with transaction.atomic():
        usdc = Currency(symbol="USDC", name="USD Coin", decimals=6)
        btc = Currency(symbol="BTC", name="Bitcoin", decimals=8)
        Currency.objects.bulk_create([usdc, btc])
        pair = Pair.objects.create(base=btc, quote=usdc)
        contracts = Contract.objects.bulk_create([
            Contract(symbol=c.symbol, pair=pair, collateral=usdc, kind=c.terms.kind.value, strike_px=c.terms.strike,
                     expiry_date=expiries[c.portfolio], floor_px=c.terms.floor, cap_px=c.terms.cap,
                     tick_size=c.tick, lot_size=c.lot, state=ContractState.LISTED) for c in auction_in.contracts])
        by_symbol = {c.symbol: c for c in contracts}
        terms = {c.symbol: c.terms for c in auction_in.contracts}
        ReferencePrice.objects.bulk_create([
            ReferencePrice(contract=by_symbol[c.symbol], kind=ReferencePriceKind.INITIAL, price=c.reference_price,
                           at=at) for c in auction_in.contracts if c.reference_price is not None])
        clients = Client.objects.bulk_create([
            Client(address="0x" + hashlib.sha256(c.id.encode()).hexdigest()[:40], registered_at=at)
            for c in auction_in.clients], batch_size=5000)
        client_pk = {spec.id: row.pk for spec, row in zip(auction_in.clients, clients, strict=True)}
        held: dict[int, Decimal] = defaultdict(Decimal)
        rows = []
        for o in auction_in.orders:
            value = quantize(order_worst_cost(terms[o.contract], o.side, o.price, o.quantity), ROUND_UP)
            held[client_pk[o.client]] += value
            rows.append(Order(client_id=client_pk[o.client], contract_id=by_symbol[o.contract].pk,
                              client_order_id=o.id, side=o.side, price=o.price, quantity=o.quantity,
                              state=OrderState.ACCEPTED, order_value=value, created_at=at, updated_at=at))
        Order.objects.bulk_create(rows, batch_size=5000)
        # Collateral: the orders' value plus as much again free (never used by an auction).
        FundLock.objects.bulk_create([
            FundLock(client_id=pk, currency=usdc, fundlock=2 * held[pk] + 1000, order_value=held[pk], updated_at=at)
            for pk in client_pk.values()], batch_size=5000)
    out["load_s"] = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh tables: give the planner their sizes, as autovacuum would
    del rows, clients

    # --- the auction's stages, called as the Celery tasks call them
    settings = AuctionSettings(time_limit_s=Decimal(time_limit))
    stages: dict[str, float] = {}
    profiles: dict[str, object] = {}
    parts = instrument_apply()
    # CPU seconds per stage, of this process (every thread), of its PostgreSQL backend and of the whole server
    # (every backend, also those that ended meanwhile: the apply's second connection), from /proc (the server
    # runs on this host): steadier than wall-clock time on a shared machine.
    cpu: dict[str, list[float]] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def ticks(pid: int, children: bool = False) -> tuple[int, float]:
        """(parent pid, CPU seconds) of a process, with those of its ended children when asked."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0, 0.0
        used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
        return int(fields[1]), used / os.sysconf("SC_CLK_TCK")

    postmaster = ticks(backend)[0]

    def server_cpu() -> tuple[float, float]:
        """(the backend's CPU seconds, the whole server's)."""
        total = ticks(postmaster, children=True)[1]
        for name in os.listdir("/proc"):
            if name.isdigit():
                parent, used = ticks(int(name))
                if parent == postmaster:
                    total += used
        return ticks(backend)[1], total

    def stage(name, fn, **kwargs):
        if profile:
            import cProfile
            profiles[name] = prof = cProfile.Profile()
            prof.enable()
        t, c, (b, a) = time.perf_counter(), time.process_time(), server_cpu()
        value = fn(**kwargs)
        stages[name] = time.perf_counter() - t
        b2, a2 = server_cpu()
        cpu[name] = [time.process_time() - c, b2 - b, a2 - a]
        if profile:
            prof.disable()
        return value

    pair = Pair.objects.select_related("base", "quote").get(pk=pair.pk)
    auction = stage("open", auction_open, pair=pair, now=now(), interval=timedelta(seconds=60))
    if auction is None:
        raise RuntimeError("auction_open did not open an auction")
    stage("close", auction_close, auction_id=auction.pk, now=now(), settings=settings)
    if BINDING_SHARE > 0:
        # The generated book's budgets (a share of the clients holds a third of what its orders could cost):
        # the close writes each client's order value plus lockups, which never binds. Not timed.
        address = {spec.id: "0x" + hashlib.sha256(spec.id.encode()).hexdigest()[:40] for spec in auction_in.clients}
        budgets = {address[spec.id]: money_str(spec.budget) for spec in auction_in.clients}
        stored = Auction.objects.get(pk=auction.pk)
        document = stored.input_document
        for client in document["clients"]:
            client["budget"] = budgets[client["id"]]
        Auction.objects.filter(pk=auction.pk).update(input_document=document)
    stage("solve", auction_solve, auction_id=auction.pk, now=now())
    parts.clear()
    stage("apply", auction_apply, auction_id=auction.pk, now=now())
    out["stages"], out["apply_parts"], out["cpu"] = stages, dict(parts), cpu
    out["total_s"] = sum(stages.values())

    # --- checks (not timed)
    auction = Auction.objects.get(pk=auction.pk)
    out.update(state=auction.state, status=auction.status, welfare=str(auction.welfare),
               upper_bound=str(auction.upper_bound), fills=auction.fills_count, snapshot=auction.orders_count,
               solver_timings=auction.timings, binding=len(auction.result_document["binding_clients"]))
    out.update(fallback_welfare=auction.result_document.get("fallback_welfare"),
               terminations=auction.result_document.get("terminations", {}),
               time_guard=auction.result_document.get("time_guard"))
    # The same input cleared again with a process burning each core: the same result document.
    replayed, out["replay_s"] = replay_under_load(auction.input_document)
    out["replay_same"] = replayed == auction.result_document
    problems = []
    if not out["replay_same"]:
        problems.append("the replay under load differs from the stored result")
    if auction.state != "applied":
        problems.append(f"auction state {auction.state}")
    if auction.orders_count != n:
        problems.append(f"snapshot holds {auction.orders_count} of {n} orders")
    doc = auction.result_document
    result = AuctionResult(
        prices={s: Decimal(p) for s, p in doc["prices"].items()},
        fills=tuple(Fill(f["order"], Decimal(f["quantity"]), Decimal(f["price"])) for f in doc["fills"]),
        welfare=Decimal(doc["welfare"]), upper_bound=Decimal(doc["upper_bound"]), status=doc["status"],
        method=doc["method"], solver=doc["solver"])
    if problem := verify(_prepare(input_from_document(auction.input_document)), result):
        problems.append(f"stored result: {problem}")
    cash = CashMovement.objects.filter(origin_ref=auction.ref).aggregate(total=Sum("amount"))["total"]
    out["cash_movements"] = CashMovement.objects.filter(origin_ref=auction.ref).count()
    out["cash_sum"] = str(cash)
    if cash is None or cash != 0:
        problems.append(f"cash movements of {auction.ref} sum to {cash}")
    unbalanced = list(Position.objects.values("contract_id").annotate(q=Sum("quantity")).exclude(q=0))
    if unbalanced:
        problems.append(f"positions do not sum to 0 in {len(unbalanced)} contracts")
    out["positions"] = Position.objects.exclude(quantity=0).count()
    negative = FundLock.objects.filter(fundlock__lt=F("order_value") + F("lockup_value") - F("settle_value")).count()
    if negative:
        problems.append(f"{negative} fund locks below zero available")
    open_value = dict(Order.objects.filter(state__in=BOOK_STATES).values("client_id").annotate(v=Sum("order_value"))
                      .values_list("client_id", "v"))
    off = [f.client_id for f in FundLock.objects.all() if f.order_value != open_value.get(f.client_id, 0)]
    if off:
        problems.append(f"{len(off)} fund locks' order value differs from their open orders' value")
    filled = Order.objects.filter(filled_quantity__gt=0).count()
    if filled != auction.fills_count:
        problems.append(f"{filled} orders filled in the database, {auction.fills_count} fills in the result")
    out["problems"] = problems
    print(RESULT_MARK + json.dumps(out), flush=True)
    if profile:
        import io
        import pstats

        for name in ("close", "solve", "apply"):
            print(f"\n===== cProfile auction_{name}, {n} orders: top cumulative, then the project's own code =====")
            # The whole profile stays in the logs for pstats (python -m pstats <file>).
            profiles[name].dump_stats(os.path.join(os.environ.get("CCP_STATE_DIR", "."), "logs",
                                                   f"profile-{name}-{n}.prof"))
            for restriction in ((24,), (str(REPO / "ccp") + "/", 12)):
                buf = io.StringIO()
                pstats.Stats(profiles[name], stream=buf).sort_stats("cumulative").print_stats(*restriction)
                text = buf.getvalue()
                print(text[text.index("   ncalls"):].rstrip() if "   ncalls" in text else text)


def _burn(stop) -> None:
    while not stop.is_set():
        pass


def replay_under_load(document: dict) -> tuple[dict, float]:
    """The result document of ``document`` cleared while a process per core burns CPU (busy loops)."""
    import multiprocessing

    from ccp.matching.auction import input_from_document, result_to_document

    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for burner in burners:
        burner.start()
    try:
        t = time.perf_counter()
        replayed = result_to_document(clear(input_from_document(document)))
        return replayed, time.perf_counter() - t
    finally:
        stop.set()
        for burner in burners:
            burner.join(10)


def instrument_apply() -> dict[str, list]:
    """Timers around the parts of auction_apply (seconds, calls): wrappers around attributes in this
    child process only (reading the held orders, the reasons, the bound clients' holds, the orders'
    update and history rows, their payloads, the position/lockup, cash and fund lock bookings, book
    levels, the commit and the stream sends after it). Parts the product code no longer has are left
    out. A few thousand wrapped calls cost milliseconds."""
    from collections import defaultdict

    from django.db import connections

    import ccp.clearing.booking as booking
    import ccp.matching.services as services
    import ccp.streams as streams

    parts: dict[str, list] = defaultdict(lambda: [0.0, 0])

    def wrap(owner, name: str, key) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                part = parts[key(*args) if callable(key) else key]
                part[0] += time.perf_counter() - t
                part[1] += 1

        setattr(owner, name, timed)

    wrap(services, "_held_orders", "_held_orders")
    wrap(services, "_reasons_store", "_reasons_store")
    wrap(services, "_holds_trim", "_holds_trim")
    wrap(booking, "bulk_update_rows", lambda model, *_: f"update {model.__name__}")
    wrap(booking, "bulk_insert_rows", lambda model, *_: f"insert {model.__name__}")
    wrap(booking, "order_payload", "order_payload")
    wrap(type(connections["default"]), "commit", "commit")  # the database wrapper's, as atomic() calls it
    wrap(streams, "_send", "stream sends after commit")
    for name in ("trades_book", "cash_book", "positions_book", "fund_locks_adjust", "books_levels_changed"):
        wrap(booking, name, name)
    return parts


def load_stack():
    """bin/stack.py by path (bin/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ccp_bin_stack", REPO / "bin" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_db(args, sizes: list[int]) -> tuple[dict[int, dict], str]:
    os.environ["CCP_STATE_DIR"] = args.state_dir  # read by stack.state_dir()
    stack = load_stack()
    log_dir = Path(args.state_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    profile_text = ""
    log(f"starting PostgreSQL :{args.pg_port} and Redis :{args.redis_port} in {stack.state_dir('bench')}")
    with stack.services("bench", args.pg_port, args.redis_port, fresh=True) as svc_env:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ccp.settings", **svc_env, "PYTHONUNBUFFERED": "1",
               "CCP_DEBUG": "0"}
        t0 = time.monotonic()
        step = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        (log_dir / "migrate.log").write_text(step.stdout + step.stderr)
        if step.returncode:
            raise RuntimeError(f"migrate failed:\n{(step.stdout + step.stderr)[-3000:]}")
        log(f"migrated in {time.monotonic() - t0:.1f} s")
        runs = [(n, False) for n in sizes] + ([(max(sizes), True)] if args.profile else [])
        for n, profile in runs:
            log(f"database: {n} orders{' under cProfile' if profile else ''}")
            argv = [sys.executable, str(Path(__file__).resolve()), "--db-child", str(n), "--seed", str(args.seed),
                    "--time-limit", args.time_limit, "--bound-share", str(BINDING_SHARE)] + (
                        ["--profile"] if profile else [])
            child = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            (log_dir / f"db-{n}{'-profile' if profile else ''}.log").write_text(child.stdout + child.stderr)
            if child.returncode:
                raise RuntimeError(f"database run of {n} orders failed ({child.returncode}):\n"
                                   f"{(child.stdout + child.stderr)[-4000:]}")
            line = next(x for x in child.stdout.splitlines() if x.startswith(RESULT_MARK))
            if profile:
                profile_text = child.stdout.split(line, 1)[1]
            else:
                results[n] = json.loads(line[len(RESULT_MARK):])
    return results, profile_text


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(engine: dict[int, dict], db: dict[int, dict]) -> list[str]:
    failures = []
    print()
    print(f"batch auction benchmark: {CONTRACTS} contracts, {CLIENTS} clients ({BINDING_SHARE:.0%} with binding "
          f"collateral in the engine runs), {os.cpu_count()} cores; {SOLVER}")
    for n, e in engine.items():
        t, b = e["timings"], e["baseline"]
        print()
        print(f"== {n} orders ==")
        print(f"engine, with binding clients ({e['binding']} binding clients trade; book generated in "
              f"{e['generate_s']:.2f} s, verify {e['verify_s']:.2f} s: ok)")
        print(f"  {'reduce':>8}{'build':>8}{'LP':>8}{'MIP':>8}{'exact':>8}{'total s':>9}  {'status':<9}"
              f"{'welfare':>14}{'upper bound':>16}{'gap':>11}{'fills':>8}")
        print(f"  {fmt_s(t.get('reduce_s')):>8}{fmt_s(t.get('build_s')):>8}{fmt_s(t.get('lp_s')):>8}"
              f"{fmt_s(t.get('mip_s')):>8}{fmt_s(t.get('exact_s')):>8}{t['total_s']:>9.3f}  {e['status']:<9}"
              f"{e['welfare']:>14.2f}{e['upper_bound']:>16.2f}{float(e['gap']):>11.2e}{e['fills']:>8}")
        print(f"  method {e['method']}; fallback (collateral-capped uncross) welfare {e['fallback_welfare']:.2f}; "
              f"solver stages {e['terminations']}{'; TIME GUARD FIRED' if e['time_guard'] else ''}")
        if e["welfare"] < e["fallback_welfare"]:
            failures.append(f"{n}: engine welfare {e['welfare']} below its fallback {e['fallback_welfare']}")
        print(f"baseline, numpy uncross without collateral: {b['total_s']:.4f} s (to arrays {b['prep_s']:.4f} s, "
              f"sort and cumulate {b['core_s']:.4f} s), welfare {b['welfare']:.2f}, {b['volume_lots']} lots")
        print(f"  ratio engine total / baseline: {t['total_s'] / b['total_s']:.1f}; engine welfare / no-collateral "
              f"welfare {e['welfare'] / b['welfare']:.4f}")
        d = db.get(n)
        if d:
            s = d["stages"]
            kind = "live book" if BINDING_SHARE == 0 else "the generated budgets after the close"
            print(f"database, {kind} ({d['binding']} binding clients): load {d['load_s']:.2f} s (not in total)")
            print(f"  {'open':>8}{'close':>8}{'solve':>8}{'apply':>8}{'total s':>9}  {'status':<9}{'welfare':>14}"
                  f"{'fills':>8}{'cash mv':>9}{'positions':>10}")
            print(f"  {s['open']:>8.3f}{s['close']:>8.3f}{s['solve']:>8.3f}{s['apply']:>8.3f}{d['total_s']:>9.3f}  "
                  f"{d['status']:<9}{Decimal(d['welfare']):>14.2f}{d['fills']:>8}{d['cash_movements']:>9}"
                  f"{d['positions']:>10}")
            if c := d.get("cpu"):
                print("  CPU s (this process + its PostgreSQL backend, + the whole server): " + ", ".join(
                    f"{stage} {c[stage][0]:.2f} + {c[stage][1]:.2f}, {c[stage][2]:.2f}"
                    for stage in ("close", "solve", "apply") if stage in c)
                    + f"; total {sum(v[0] + v[2] for v in c.values()):.2f}")
            p = d["apply_parts"]
            if p:
                shown = [("_held_orders", "read orders"), ("_reasons_store", "reasons"), ("_holds_trim", "holds trim"),
                         ("update Order", "update orders"),
                         ("insert OrderStateHistory", "history"), ("order_payload", "payloads"),
                         ("trades_book", "trades"),
                         ("cash_book", "cash movements"), ("positions_book", "positions+lockups"),
                         ("fund_locks_adjust", "fund locks"), ("books_levels_changed", "book levels"),
                         ("commit", "commit"), ("stream sends after commit", "stream sends")]
                listed = [(label, p[k]) for k, label in shown if k in p]
                other = s["apply"] - sum(v[0] for _, v in listed)
                print("  apply: " + ", ".join(f"{label} {v[0]:.2f} s" + (f" ({v[1]}x)" if v[1] > 1 else "")
                                              for label, v in listed) + f", other {other:.2f} s")
            st = d["solver_timings"]
            same = Decimal(d["welfare"]) == b["welfare"] or d["binding"] > 0
            print(f"  in solve: clear() {st.get('total_s', 0):.3f} s; welfare {d['welfare']} (upper bound "
                  f"{d['upper_bound']}, {Decimal(d['welfare']) / Decimal(d['upper_bound']):.6f} of it; fallback "
                  f"{d['fallback_welfare']}; no-collateral baseline {b['welfare']:.2f}); ratio total / baseline "
                  f"{d['total_s'] / b['total_s']:.1f}; conservation: "
                  f"{'ok' if not d['problems'] else '; '.join(d['problems'])}")
            print("  clear() stages: " + ", ".join(f"{k.removesuffix('_s')} {float(v):.2f}" for k, v in st.items()
                                                    if k != "total_s") + " s")
            print(f"  replay with every core busy: {d['replay_s']:.2f} s, result "
                  f"{'the same' if d['replay_same'] else 'DIFFERENT'}{'; TIME GUARD FIRED' if d['time_guard'] else ''}")
            if Decimal(d["welfare"]) < Decimal(d["fallback_welfare"]):
                failures.append(f"{n} database: welfare {d['welfare']} below the fallback {d['fallback_welfare']}")
            if not same:
                failures.append(f"{n}: database welfare {d['welfare']} != no-collateral uncross {b['welfare']}")
            failures += [f"{n} database: {p}" for p in d["problems"]]
        if e["gap"] > TARGET_GAP:
            print(f"  gap {e['gap']:.2e} above the 0.5% target")
    # Summary
    print()
    print(f"summary (seconds; ratio = engine total / numpy uncross; DB = open + close + solve + apply; "
          f"{BINDING_SHARE:.0%} of the clients bound)")
    print(f"{'orders':>8}{'engine s':>10}{'status':>10}{'gap':>11}{'uncross s':>11}{'ratio':>8}{'DB e2e s':>10}"
          f"{'DB ratio':>10}{'DB load s':>11}")
    for n, e in engine.items():
        d = db.get(n)
        b = e["baseline"]["total_s"]
        print(f"{n:>8}{e['timings']['total_s']:>10.3f}{e['status']:>10}{float(e['gap']):>11.2e}{b:>11.4f}"
              f"{e['timings']['total_s'] / b:>8.1f}" + (f"{d['total_s']:>10.3f}{d['total_s'] / b:>10.1f}"
                                                         f"{d['load_s']:>11.2f}" if d else ""))
    big = max(engine)
    if big >= 100000:
        e, d = engine[big], db.get(big)
        print()
        gap_ok = all(x["gap"] <= TARGET_GAP for x in engine.values())
        print(f"target welfare within 0.5% of the certified bound: {'met' if gap_ok else 'NOT met'} "
              f"(largest gap {max(float(x['gap']) for x in engine.values()):.2e})")
        if d:
            print(f"target {big} orders end to end with the database < {TARGET_E2E_S:.0f} s: "
                  f"{'met' if d['total_s'] < TARGET_E2E_S else 'NOT met'} ({d['total_s']:.2f} s, {d['binding']} "
                  f"binding clients)")
            held = Decimal(d["welfare"]) >= Decimal(d["fallback_welfare"]) and d["replay_same"]
            print(f"target welfare never below the fallback and the same result on a replay under load: "
                  f"{'met' if held else 'NOT met'}")
        print(f"engine alone, {big} orders with binding clients: {e['timings']['total_s']:.2f} s")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="order counts, comma-separated")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated book")
    parser.add_argument("--time-limit", default="60", help="the engine's wall-clock guard, s")
    parser.add_argument("--no-db", action="store_true", help="engine and baseline only, no database run")
    parser.add_argument("--bound-share", type=float, default=0.05,
                        help="share of the clients whose collateral binds (a third of what their orders could cost)")
    parser.add_argument("--profile", action="store_true",
                        help="one more database run of the largest size under cProfile; prints the top entries")
    parser.add_argument("--pg-port", type=int, default=25901)
    parser.add_argument("--redis-port", type=int, default=26901)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-auction",
                        help="PostgreSQL data and logs (wiped at the start of each run)")
    parser.add_argument("--db-child", type=int, metavar="ORDERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global BINDING_SHARE
    BINDING_SHARE = args.bound_share
    if args.db_child is not None:
        db_child(args.db_child, args.seed, args.time_limit, args.profile)
        return 0
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        parser.error("--sizes: positive order counts")

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    code = 1
    try:
        engine = {}
        for n in sizes:
            log(f"engine: {n} orders")
            engine[n] = run_engine(n, args.seed, args.time_limit)
        db, profile_text = ({}, "") if args.no_db else run_db(args, sizes)
        failures = report(engine, db)
        if profile_text:
            print(profile_text)
        for f in failures:
            print(f"FAILED: {f}")
        code = 1 if failures else 0
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log(f"error: {exc}")
        code = 1
    log("stopped everything it started")
    return code


if __name__ == "__main__":
    sys.exit(main())
