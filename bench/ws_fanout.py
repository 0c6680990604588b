"""Book stream fan-out benchmark: how long a book change takes from its commit to each of 1,000
WebSocket subscribers, with a same-run baseline of one subscriber.

Starts its own throw-away PostgreSQL and Redis (``bin/stack.py``'s ``services``), migrates, lists the
contracts and funds the clients of ``bench/order_intake.py``'s set-up, then serves the app as
``bin/run`` does (``python -m ccp.server``: uvicorn with ``--server-workers`` processes). Then, per
phase (baseline: 1 subscriber; fan-out: ``--subscribers``):

1. opens the subscribers to ``ws://…/ws/v1/book/<symbol>`` of one future, from ``--client-procs``
   processes (asyncio + ``websockets``), each waiting for its ``book.snapshot``;
2. a trigger process (Django set up against the same database, as a Celery worker is) makes
   ``--changes`` book changes, one every ``--interval`` s: alternately an order accepted
   (``order_submit`` + ``order_validate``) and the oldest open one cancelled (``order_cancel``). Each
   change's commit is stamped (``time.time_ns()`` in an on-commit hook registered before the service's
   own, so it runs right after COMMIT and before the stream send) with the book sequence it took;
3. every subscriber stamps each message on arrival (``time.time_ns()``, parsed only afterwards).

Prints, per phase, the delay commit -> arrival over every (subscriber, change) pair: p50, p99, p99.9,
max; the pairs missed (a sequence after the subscriber's snapshot that never arrived) and out of order;
the CPU seconds per process tree, the rest of the machine's ('others') and the load average, since
the machine is shared. Target (issue 12): p99 within 100 ms for 1,000 subscribers.

Run from the repository root, after ``bin/test`` or ``bin/run`` created ``.venv``:

    .venv/bin/python bench/ws_fanout.py [--subscribers 1000] [--changes 100] [--interval 0.2] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.order_intake import (  # noqa: E402  (the repository on the path first)
    HOST,
    SETUP_MARK,
    Children,
    _redis_pid,
    cpu_by_tree,
    load_stack,
    log,
    run_step,
)

STAMP_MARK = "BENCH-STAMP "
CPU_MARK = "BENCH-CPU "
READY_TIMEOUT_S = 120
WARM_UP_CHANGES = 4  # per phase, before the measured ones


# --------------------------------------------------------------------------------------------------
# Trigger: runs in a child process with Django set up against the services' database.
# --------------------------------------------------------------------------------------------------

def child_trigger(symbol: str, changes: int, interval_s: float) -> None:
    """Make ``changes`` book changes of ``symbol``, one every ``interval_s``; print each one's book
    sequence and commit time."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from django.db import transaction

    from ccp.accounts.models import Client
    from ccp.clock import utcnow
    from ccp.contracts.models import Contract
    from ccp.contracts.payoffs import price_bounds
    from ccp.orders.services import OrderRequest, order_cancel, order_submit, order_validate

    contract = Contract.objects.get(symbol=symbol)
    low, high = price_bounds(contract.terms)
    mid = (low + high) / 2 // contract.tick_size * contract.tick_size
    buyer, seller = Client.objects.order_by("id")[:2]
    tag = time.time_ns()
    open_orders: list = []

    def stamped(change) -> tuple[int, int]:
        """Run ``change`` in a transaction; return (book sequence it left, commit time in ns)."""
        committed: list[int] = []
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.time_ns()))  # before the stream's hook
            change()
            sequence = Contract.objects.values_list("book_sequence", flat=True).get(pk=contract.pk)
        return sequence, committed[0]

    next_at, cpu_at_start = time.monotonic(), time.process_time()
    for i in range(-WARM_UP_CHANGES, changes):  # the first ones open connections: not measured
        next_at += interval_s
        if i % 2 == 0:  # an order accepted: buys below the middle, sells above, over 10 levels a side
            side, client = ("buy", buyer) if i % 4 == 0 else ("sell", seller)
            offset = contract.tick_size * (1 + (i // 4) % 10)
            price = mid - offset if side == "buy" else mid + offset
            order, _ = order_submit(client=client, request=OrderRequest(
                client_order_id=f"ws-{tag}-{i}", contract=contract, side=side, kind="limit", price=price,
                quantity=contract.lot_size), now=utcnow(), validate_later=False)
            open_orders.append(order)
            sequence, at_ns = stamped(lambda o=order: order_validate(order_id=o.pk, now=utcnow()))
        else:  # the oldest open order cancelled
            order = open_orders.pop(0)
            sequence, at_ns = stamped(lambda o=order: order_cancel(client=o.client, order_id=o.pk, now=utcnow()))
        if i >= 0:
            print(f"{STAMP_MARK}{sequence} {at_ns}", flush=True)
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(f"{CPU_MARK}{time.process_time() - cpu_at_start:.3f}", flush=True)


# --------------------------------------------------------------------------------------------------
# Subscribers: each client process opens its share and records every message's arrival.
# --------------------------------------------------------------------------------------------------

def subscribers_run(url: str, count: int, ready, stop, results) -> None:
    """Open ``count`` subscribers to ``url``, put "ready" (or an error) on ``ready``, record until
    ``stop`` is set, then put [(snapshot sequence, [(arrival ns, text), ...]), ...] on ``results``."""
    asyncio.run(_subscribers(url, count, ready, stop, results))


async def _subscribers(url: str, count: int, ready, stop, results) -> None:
    from websockets.asyncio.client import connect

    async def one() -> tuple:
        ws = await connect(url, max_queue=None, ping_interval=None, open_timeout=60)
        snapshot = json.loads(await ws.recv())
        return ws, snapshot["sequence"], []

    try:
        opened = []
        for start in range(0, count, 50):  # in bursts: the server's accept queue is finite
            opened += await asyncio.gather(*(one() for _ in range(min(50, count - start))))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        ready.put(f"error: {type(exc).__name__}: {exc}")
        return

    async def record(ws, received: list) -> None:
        with contextlib.suppress(Exception):
            async for text in ws:
                received.append((time.time_ns(), text))

    tasks = [asyncio.create_task(record(ws, received)) for ws, _, received in opened]
    cpu_at_ready = time.process_time()
    ready.put("ready")
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for ws, _, _ in opened:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put((time.process_time() - cpu_at_ready, [(sequence, received) for _, sequence, received in opened]))


# --------------------------------------------------------------------------------------------------
# A phase
# --------------------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    subscribers: int
    changes: int = 0
    delays_ms: list[float] = field(default_factory=list)
    missed: int = 0
    out_of_order: int = 0
    messages: int = 0
    wall_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    load: tuple[float, ...] = ()

    def pct(self, q: float) -> float:
        if not self.delays_ms:
            return float("nan")
        xs = sorted(self.delays_ms)
        return xs[max(0, min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1))]


def phase_run(args, env: dict[str, str], url: str, symbol: str, name: str, subscribers: int,
              cpu_roots: dict[str, list[int]], children: Children) -> Result:
    ctx = multiprocessing.get_context("fork")
    procs = max(1, min(args.client_procs, subscribers))
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=subscribers_run, args=(url, n, ready, stop, results), daemon=True) for n in shares]
    for w in workers:
        w.start()
    cpu_roots = {**cpu_roots, "bench": [os.getpid()]}
    try:
        for _ in workers:
            answer = ready.get(timeout=READY_TIMEOUT_S)
            if answer != "ready":
                raise RuntimeError(f"subscribers: {answer}")
        log(f"{name}: {subscribers} subscribers open; {args.changes} changes, one every {args.interval} s")
        children.check_alive()
        before, t0 = cpu_by_tree(cpu_roots), time.perf_counter()
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-trigger", symbol,
                              str(args.changes), str(args.interval)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=args.changes * args.interval + 120)
        if out.returncode != 0:
            raise RuntimeError(f"trigger failed ({out.returncode}):\n{out.stderr[-3000:]}")
        time.sleep(args.settle)  # the last change's deliveries
        wall = time.perf_counter() - t0
        after = cpu_by_tree(cpu_roots)
        load = os.getloadavg()
        stop.set()
        shares_out = [results.get(timeout=READY_TIMEOUT_S) for _ in workers]
        received = [sub for _, subs in shares_out for sub in subs]
    finally:
        stop.set()
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
    commits = {}
    for line in out.stdout.splitlines():
        if line.startswith(STAMP_MARK):
            sequence, at_ns = line[len(STAMP_MARK):].split()
            commits[int(sequence)] = int(at_ns)
    result = Result(name, subscribers, changes=len(commits), wall_s=wall, load=load,
                    cpu={k: max(0.0, after[k] - before.get(k, 0.0)) for k in after})
    # The bench's own tree split: the subscriber processes' CPU, the trigger's (from its report).
    result.cpu["subscribers"] = sum(cpu for cpu, _ in shares_out)
    result.cpu["trigger"] = next((float(line[len(CPU_MARK):]) for line in out.stdout.splitlines()
                                  if line.startswith(CPU_MARK)), 0.0)
    for snapshot_sequence, messages in received:
        last, seen = snapshot_sequence, set()
        for at_ns, text in messages:
            event = json.loads(text)
            sequence = event.get("sequence")
            if event.get("type") != "book.level" or sequence is None:
                continue
            result.messages += 1
            if sequence <= last:
                result.out_of_order += 1
            last = max(last, sequence)
            seen.add(sequence)
            if sequence in commits:
                result.delays_ms.append((at_ns - commits[sequence]) / 1e6)
        result.missed += sum(1 for s in commits if s > snapshot_sequence and s not in seen)
    return result


def report(args, results: list[Result]) -> None:
    print()
    print(f"book stream fan-out: {args.changes} book changes one every {args.interval} s, served by python -m "
          f"ccp.server (uvicorn) x{args.server_workers} processes, subscribers in {args.client_procs} client "
          f"process(es), {os.cpu_count()} cores shared by the server, PostgreSQL, Redis, the trigger and the clients")
    print(f"{'':<26}{'subs':>6}{'changes':>8}{'pairs':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
          f"{'missed':>8}{'out of order':>14}")
    for r in results:
        print(f"{r.name:<26}{r.subscribers:>6}{r.changes:>8}{len(r.delays_ms):>9}{r.pct(50):>9.2f}{r.pct(99):>9.2f}"
              f"{r.pct(99.9):>10.2f}{max(r.delays_ms, default=float('nan')):>9.2f}{r.missed:>8}{r.out_of_order:>14}")
    print()
    print("CPU seconds per process tree during each phase ('others': the rest of the machine, i.e. other")
    print("people's work; large values there skew the figures), and the 1-minute load average at its end:")
    keys = list(results[0].cpu)
    print(f"{'':<26}{'wall s':>8}" + "".join(f"{k:>10}" for k in keys) + f"{'load 1m':>9}")
    for r in results:
        print(f"{r.name:<26}{r.wall_s:>8.2f}" + "".join(f"{r.cpu.get(k, 0.0):>10.2f}" for k in keys)
              + f"{r.load[0]:>9.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000, help="WebSocket subscribers of the fan-out phase")
    parser.add_argument("--changes", type=int, default=100, help="book changes per phase")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between two book changes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--client-procs", type=int, default=1, help="processes holding the subscribers")
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1,
                        help="server processes (CCP_SERVER_WORKERS)")
    parser.add_argument("--port", type=int, default=8802, help="server port on 127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=25802)
    parser.add_argument("--redis-port", type=int, default=26802)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-ws",
                        help="PostgreSQL data and logs (wiped at the start of each run)")
    parser.add_argument("--child-trigger", nargs=3, metavar=("SYMBOL", "CHANGES", "INTERVAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_trigger:
        symbol, changes, interval = args.child_trigger
        child_trigger(symbol, int(changes), float(interval))
        return 0
    for name in ("subscribers", "changes", "client_procs", "server_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    # Every subscriber is a socket here and in a server process (the children inherit the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.subscribers + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    os.environ["CCP_STATE_DIR"] = args.state_dir  # read by stack.state_dir()
    stack = load_stack()
    state = stack.state_dir("bench")
    log_dir = Path(args.state_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    children = Children(log_dir)
    code = 1
    log(f"starting PostgreSQL :{args.pg_port} and Redis :{args.redis_port} in {state} (logs in {log_dir})")
    try:
        with stack.services("bench", args.pg_port, args.redis_port, fresh=True) as svc_env:
            env = {"DJANGO_SETTINGS_MODULE": "ccp.settings", **os.environ, **svc_env, "PYTHONUNBUFFERED": "1",
                   "CCP_DEBUG": "0", "CCP_SERVER_WORKERS": str(args.server_workers)}
            run_step("migrate", [py, "manage.py", "migrate", "--noinput"], env, log_dir, 300)
            out = run_step("setup", [py, str(REPO / "bench" / "order_intake.py"), "--child-setup", "2"],
                           env, log_dir, 300)
            setup = json.loads(next(line for line in out.splitlines() if line.startswith(SETUP_MARK))[len(SETUP_MARK):])
            symbol = next(c["symbol"] for c in setup["contracts"]
                          if c["symbol"].startswith("BTC-") and c["symbol"].endswith("-F"))
            if not stack.port_free(args.port):
                raise RuntimeError(f"port {args.port} is taken: choose another with --port")
            try:
                server = children.start("server", [py, "-m", "ccp.server", "-b", HOST, "-p", str(args.port),
                                                   "ccp.asgi:application"], env)
                deadline = time.monotonic() + 60
                while stack.port_free(args.port):
                    children.check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not open its port within 60 s")
                    time.sleep(0.1)
                postmaster = int((state / "pg" / "postmaster.pid").read_text().split()[0])
                cpu_roots = {"server": [server.pid], "postgres": [postmaster],
                             "redis": [p for p in [_redis_pid(args.redis_port)] if p]}
                url = f"ws://{HOST}:{args.port}/ws/v1/book/{symbol}"
                log(f"book stream {url}")
                results = [phase_run(args, env, url, symbol, "baseline: 1 subscriber", 1, cpu_roots, children),
                           phase_run(args, env, url, symbol, f"fan-out: {args.subscribers} subscribers",
                                     args.subscribers, cpu_roots, children)]
                report(args, results)
                code = 0 if all(r.missed == 0 and r.out_of_order == 0 and r.changes == args.changes
                                for r in results) else 1
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                children.stop()
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
