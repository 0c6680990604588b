"""Order intake benchmark: HTTP load over loopback against the served app, with a same-run baseline.

Starts its own throw-away PostgreSQL and Redis (``bin/stack.py``'s ``services``), migrates, creates
contracts, clients with plenty of USDC collateral and one API token each, then serves the app as
``bin/run`` does (``python -m ccp.server``: uvicorn with ``--server-workers`` processes, and a prefork
Celery worker with two processes; the order entry throttle off, as a batch of 100 exceeds its 50/s per
client). Then, from this process:

1. baseline: ``GET /api/v1/ping`` (a bare Django JsonResponse, no database), warm-up then
   ``--orders`` requests over ``--connections`` concurrent keep-alive connections (``--client``: raw asyncio
   streams, the default, or aiohttp);
2. intake: ``POST /api/v1/orders`` with the same load shape (warm-up orders first, waited for until
   the worker validated them), spread over clients, contracts, sides and prices on the tick grid; each
   answer is 201 (validated within ``CCP_ORDER_WAIT_MS``) or 202 (received);
3. validation: waits (at most ``--drain-timeout`` s) until every measured order left 'received';
4. batch: ``POST /api/v1/orders/batch`` with ``--batch-size`` orders each, ``--batch-orders`` orders in
   all over the same connections, then waits again until every order left 'received'.

Prints requests/s and p50/p99 latency of each, the ratios to ping, and accepted orders per second
end to end (first measured request sent -> last measured order validated, from the orders'
``updated_at``) of single orders and of batches. Loads go to 127.0.0.1 only, are bounded in count
(``--orders``, ``--batch-orders``) and in time (``--phase-timeout``, ``--drain-timeout``) and stop by
themselves. Everything started here is stopped at the end, also on Ctrl-C, SIGTERM or an error.

Run from the repository root, after ``bin/test`` or ``bin/run`` created ``.venv`` (``--help`` lists
the options; the defaults finish in about two minutes on 2 cores):

    .venv/bin/python bench/order_intake.py [--orders 2000] [--connections 32] [--clients 32] ...

PostgreSQL runs with fsync off, as for ``bin/test`` (``--durable`` turns it on). Logs of every
child process are kept in ``<state-dir>/logs``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, never anything else
SETUP_MARK = "BENCH-SETUP-JSON "

# Contracts the benchmark lists (one or more expiries of each): base -> (strikes, floor, cap, tick, lot).
# The same terms as the demo series of ``manage.py ccp_demo``, but expiring weeks ahead so a run
# near midnight UTC does not meet a trading halt.
SERIES = {
    "BTC": (("80000", "90000", "100000", "110000", "120000"), "50000", "150000", "1", "0.01"),
    "ETH": (("2500", "3000", "3500", "4000"), "1000", "6000", "0.1", "0.1"),
}
EXPIRY_DAYS_AHEAD = (30, 60)
COLLATERAL_PER_CLIENT = "1000000000"  # USDC: far more than any run can lock
ORDER_ANSWERS = (201, 202)  # validated within the server's wait, or received


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# Set-up data: runs in a child process with Django set up against the services' database.
# --------------------------------------------------------------------------------------------------

def child_setup(n_clients: int, continuous: bool = False) -> None:
    """Create contracts, clients, fund locks and API tokens; print them as one JSON line. ``continuous``:
    the futures trade on the continuous book (the operator's service switches them) and only they are
    listed for the orders."""
    import secrets
    from datetime import timedelta

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    from django.conf import settings
    from django.db import transaction

    import ccp.asgi  # noqa: F401 - what the server imports: sets Django up, as in the served app
    from ccp.accounts.models import ApiToken, Client, FundLock
    from ccp.accounts.services import token_hash
    from ccp.clock import utcnow
    from ccp.contracts.models import Contract, ContractState, Currency, Pair
    from ccp.contracts.payoffs import ContractKind, price_bounds
    from ccp.contracts.services import SeriesSpec, contract_series_create
    from ccp.orders.tasks import order_validate_task

    # Does the web process send order validations to the project's broker? Only if something it
    # imports loads celery_app.py; otherwise Celery's default app (amqp://localhost) is used.
    celery_app_loaded = order_validate_task.app.conf.broker_url == settings.CELERY_BROKER_URL

    now = utcnow()
    with transaction.atomic():
        usdc, _ = Currency.objects.get_or_create(symbol="USDC", defaults={"name": "USD Coin", "decimals": 6})
        contracts: list[Contract] = []
        for base_symbol, (strikes, floor_px, cap_px, tick, lot) in SERIES.items():
            base, _ = Currency.objects.get_or_create(symbol=base_symbol, defaults={"name": base_symbol})
            pair, _ = Pair.objects.get_or_create(base=base, quote=usdc)
            for days in EXPIRY_DAYS_AHEAD:
                spec = SeriesSpec(
                    pair=pair, collateral=usdc, expiry_date=(now + timedelta(days=days)).date(),
                    kinds=(ContractKind.CALL, ContractKind.PUT, ContractKind.FUTURE),
                    strikes=tuple(Decimal(s) for s in strikes), floor_px=Decimal(floor_px),
                    cap_px=Decimal(cap_px), tick_size=Decimal(tick), lot_size=Decimal(lot),
                )
                contract_series_create(spec=spec, now=now)
                contracts += Contract.objects.filter(pair=pair, expiry_date=spec.expiry_date,
                                                     state=ContractState.LISTED)
        if continuous:
            from ccp.contracts.models import TradingMode
            from ccp.contracts.services import contract_trading_mode_set

            contracts = [c for c in contracts if c.kind == ContractKind.FUTURE]
            for contract in contracts:
                contract_trading_mode_set(contract_id=contract.pk, mode=TradingMode.CONTINUOUS, by="bench",
                                          reason="order intake benchmark", now=now)
        clients = Client.objects.bulk_create(
            [Client(address="0x" + secrets.token_hex(20), registered_at=now) for _ in range(n_clients)])
        FundLock.objects.bulk_create([FundLock(client=c, currency=usdc, fundlock=Decimal(COLLATERAL_PER_CLIENT),
                                               updated_at=now) for c in clients])
        tokens = [secrets.token_urlsafe(32) for _ in clients]
        ApiToken.objects.bulk_create([
            ApiToken(key_hash=token_hash(t), prefix=t[:8], client=c, created_at=now,
                     expires_at=now + timedelta(days=1)) for c, t in zip(clients, tokens, strict=True)])
    out = {
        "celery_app_loaded": celery_app_loaded,
        "tokens": tokens,
        "contracts": [
            {"symbol": c.symbol, "tick": str(c.tick_size), "lot": str(c.lot_size),
             "low": str(price_bounds(c.terms)[0]), "high": str(price_bounds(c.terms)[1])}
            for c in contracts
        ],
    }
    print(SETUP_MARK + json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------

def load_stack():
    """bin/stack.py by path (bin/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ccp_bin_stack", REPO / "bin" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Children:
    """Child processes, each in its own session; stop() terminates their process groups."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        """SIGTERM to each leader (Celery's main process then shuts its pool down itself), then SIGKILL to
        whatever is left of the process groups after a grace period."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within 20 s of SIGTERM: killing its process group")
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
            proc.wait(5)
        self.procs.clear()


def run_step(name: str, argv: list[str], env: dict[str, str], log_dir: Path, timeout_s: float) -> str:
    """Run a set-up step to completion; its output goes to a log file and is returned."""
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    (log_dir / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def cpu_by_tree(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far per named process tree: each process counts for the
    nearest of its ancestors (itself included) that is a named root."""
    owner = {pid: name for name, pids in roots.items() for pid in pids}
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        # utime + stime, plus cutime + cstime: what its exited, reaped children used (short-lived
        # PostgreSQL backends, for example); live children are counted by themselves.
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / tick
    totals = dict.fromkeys(roots, 0.0)
    for pid, seconds in cpu.items():
        p = pid
        while p and p not in owner:
            p = parent.get(p, 0)
        if p:
            totals[owner[p]] += seconds
    # Everything else on the machine (other people's work skews the figures): busy time from
    # /proc/stat minus the trees above; differences of this over a phase are what matter.
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    totals["others"] = max(0.0, (user + nice + system + irq + softirq + steal) / tick - sum(totals.values()))
    return totals


# --------------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    expect: tuple[int, ...]  # the statuses that count as answered
    sent: int = 0
    timed_out: bool = False  # stopped sending at the phase time limit
    latencies: list[float] = field(default_factory=list)  # seconds, responses with the expected status
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0
    connections_opened: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    redis_connections: int = 0  # opened by anyone during the phase
    pg_sessions: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[max(0, min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1))] * 1000


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]


class RawClient:
    """HTTP/1.1 keep-alive connections over asyncio streams, kept between requests (``opened`` counts those
    it opened). The load generator shares the 2 cores with the system it measures: aiohttp spent about 0.19 ms
    of CPU a request, this about a third of it. It sends the headers aiohttp sent (so the server's work is the
    same) and reads answers with a Content-Length or chunked."""

    HEADERS = "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nUser-Agent: Python/3.11 aiohttp/3\r\n"

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def request(self, req: Request) -> tuple[int, bytes]:
        head = f"{req.method} {req.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.HEADERS}" + "".join(
            f"{k}: {v}\r\n" for k, v in req.headers.items())
        data = (head + f"Content-Length: {len(req.body)}\r\n\r\n").encode() + req.body if req.body is not None \
            else (head + "\r\n").encode()
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                writer.write(data)
                status, body, keep = await self._answer(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status, body

    @staticmethod
    async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append((await reader.readexactly(size + 2))[:-2])
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            body = b"".join(parts)
        else:
            raise ValueError(f"an answer with neither Content-Length nor chunked: {head[:200]!r}")
        return status, body, headers.get(b"connection") != b"close"

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def run_phase(session, base_url: str, phase: Phase, requests: list[Request], connections: int,
                    time_limit_s: float) -> Phase:
    """Send ``requests`` over ``connections`` concurrent keep-alive connections, each sequentially (``session``: a
    ``RawClient`` or an aiohttp session)."""
    import aiohttp

    queue = iter(requests)  # shared by the connection loops; safe: asyncio switches only at awaits
    deadline = time.monotonic() + time_limit_s

    async def connection_loop() -> None:
        for req in queue:
            if time.monotonic() > deadline:
                phase.timed_out = True
                return
            phase.sent += 1
            t0 = time.perf_counter()
            try:
                if isinstance(session, RawClient):
                    status, body = await session.request(req)
                else:
                    async with session.request(req.method, base_url + req.path, data=req.body,
                                               headers=req.headers) as resp:
                        body = await resp.read()
                        status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as exc:
                phase.errors[type(exc).__name__] += 1
                continue
            latency = time.perf_counter() - t0
            phase.statuses[status] += 1
            if status in phase.expect:
                phase.latencies.append(latency)
            elif len(phase.samples) < 5:
                phase.samples.append(f"{status} {body[:300].decode(errors='replace')}")

    phase.wall_start = time.time()
    t0 = time.perf_counter()
    await asyncio.gather(*(connection_loop() for _ in range(connections)))
    phase.elapsed = time.perf_counter() - t0
    phase.wall_end = time.time()
    return phase


def redis_connections_received(port: int) -> int:
    """Redis' total_connections_received counter (INFO stats), over a raw socket."""
    import socket

    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"INFO stats\r\n")
        data = b""
        while b"total_connections_received" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    line = next(x for x in data.decode().splitlines() if x.startswith("total_connections_received:"))
    return int(line.split(":")[1]) - 1  # not counting this one


async def pg_sessions(db) -> int:
    """Sessions PostgreSQL has opened on the ccp database so far (pg_stat_database, PostgreSQL 14+)."""
    cur = await db.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
    return (await cur.fetchone())[0]


def order_bodies(setup: dict, count: int, prefix: str, rng: random.Random) -> list[dict]:
    """Limit orders spread over contracts, sides and prices on the tick grid within bounds."""
    contracts = setup["contracts"]
    out = []
    for i in range(count):
        c = contracts[rng.randrange(len(contracts))]
        tick, lot = Decimal(c["tick"]), Decimal(c["lot"])
        low, high = Decimal(c["low"]), Decimal(c["high"])
        steps = int((high - low) / tick)
        price = low + tick * rng.randint(1, steps - 1)  # strictly inside the bounds
        quantity = lot * rng.randint(1, 10)
        out.append({"client_order_id": f"{prefix}-{i}", "contract": c["symbol"], "side": rng.choice(("buy", "sell")),
                    "kind": "limit", "price": str(price), "quantity": str(quantity)})
    return out


def _post(path: str, token: str, body: object) -> Request:
    return Request("POST", path, json.dumps(body).encode(),
                   {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def order_requests(setup: dict, count: int, prefix: str, rng: random.Random) -> list[Request]:
    """One order per request, the clients in turn."""
    tokens = setup["tokens"]
    return [_post("/api/v1/orders", tokens[i % len(tokens)], body)
            for i, body in enumerate(order_bodies(setup, count, prefix, rng))]


def batch_requests(setup: dict, count: int, size: int, prefix: str, rng: random.Random) -> list[Request]:
    """``count`` orders in batches of ``size``, each batch one client's, the clients in turn."""
    tokens, bodies = setup["tokens"], order_bodies(setup, count, prefix, rng)
    return [_post("/api/v1/orders/batch", tokens[i % len(tokens)], {"orders": bodies[start:start + size]})
            for i, start in enumerate(range(0, count, size))]


async def orders_by_state(db, prefix: str) -> dict[str, tuple[int, datetime | None]]:
    """state (with the reject reason) -> (count, latest updated_at) of the orders with this id prefix."""
    cur = await db.execute(
        "SELECT state, reject_reason, count(*), max(updated_at) FROM orders_order "
        "WHERE client_order_id LIKE %s GROUP BY state, reject_reason", [prefix + "-%"])
    return {(state if not reason else f"{state} ({reason})"): (n, at) for state, reason, n, at in await cur.fetchall()}


async def wait_validated(db, prefix: str, expected: int, timeout_s: float, children: Children) -> tuple[dict, bool]:
    """Poll until every order with this prefix left 'received' (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = await orders_by_state(db, prefix)
        done = sum(n for s, (n, _) in states.items() if s != "received")
        if done >= expected:
            return states, True
        if time.monotonic() > deadline:
            return states, False
        children.check_alive()
        await asyncio.sleep(0.25)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------

async def bench(args, env: dict[str, str], setup: dict, children: Children, cpu_roots: dict[str, list[int]]) -> int:
    import aiohttp
    import psycopg

    rng = random.Random(args.seed)
    base_url = f"http://{HOST}:{args.port}"
    ping = Request("GET", "/api/v1/ping", None, {})
    opened = Counter()

    async def on_conn(_session, _ctx, _params) -> None:
        opened["n"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_conn)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections,
                                     keepalive_timeout=60, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)

    def cpu_now() -> dict[str, float]:
        return cpu_by_tree(cpu_roots)

    async def measured(phase: Phase, requests: list[Request], connections: int = args.connections) -> Phase:
        before, opened_before = cpu_now(), opened["n"] + (raw.opened if raw else 0)
        redis_before, pg_before = redis_connections_received(args.redis_port), await pg_sessions(db)
        await run_phase(session, base_url, phase, requests, connections, args.phase_timeout)
        after = cpu_now()
        phase.cpu = {k: max(0.0, after[k] - before[k]) for k in after}
        phase.connections_opened = opened["n"] + (raw.opened if raw else 0) - opened_before
        phase.redis_connections = redis_connections_received(args.redis_port) - redis_before
        phase.pg_sessions = await pg_sessions(db) - pg_before
        return phase

    raw = RawClient(HOST, args.port, args.request_timeout) if args.client == "raw" else None
    async with (aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace]) as aio,
                await psycopg.AsyncConnection.connect(env["DATABASE_URL"], autocommit=True) as db):
        session = raw or aio
        # --- baseline: the bare Django JSON endpoint
        log(f"ping: warm-up {args.warmup} requests")
        warm = await run_phase(session, base_url, Phase("ping warm-up", (200,)), [ping] * args.warmup,
                               args.connections, args.phase_timeout)
        if warm.ok != args.warmup:
            raise RuntimeError(f"ping warm-up failed: {dict(warm.statuses)} {dict(warm.errors)} {warm.samples}")
        log(f"ping: {args.orders} requests over {args.connections} connections")
        ping_phase = await measured(Phase("ping", (200,)), [ping] * args.orders)

        # --- intake warm-up: also proves the worker validates; wait for it to drain
        log(f"intake: warm-up {args.warmup} orders, then waiting for the worker to validate them")
        warm = await run_phase(session, base_url, Phase("intake warm-up", ORDER_ANSWERS),
                               order_requests(setup, args.warmup, "w", rng), args.connections, args.phase_timeout)
        if warm.ok != args.warmup:
            raise RuntimeError(f"intake warm-up failed: {dict(warm.statuses)} {dict(warm.errors)} {warm.samples}")
        states, drained = await wait_validated(db, "w", args.warmup, args.drain_timeout, children)
        if not drained:
            raise RuntimeError(f"warm-up orders not validated within {args.drain_timeout} s: {states}")

        # --- intake
        requests = order_requests(setup, args.orders, "m", rng)
        log(f"intake: {args.orders} orders over {args.connections} connections ({len(setup['tokens'])} clients, "
            f"{len(setup['contracts'])} contracts)")
        cpu_before, t_before = cpu_now(), time.perf_counter()
        redis_before, pg_before = redis_connections_received(args.redis_port), await pg_sessions(db)
        intake = await measured(Phase("intake", ORDER_ANSWERS), requests)
        log(f"intake: waiting (at most {args.drain_timeout:.0f} s) until every order left 'received'")
        states, drained = await wait_validated(db, "m", intake.ok, args.drain_timeout, children)
        cpu_after = cpu_now()
        e2e = Phase("intake end to end", ORDER_ANSWERS, elapsed=time.perf_counter() - t_before)
        e2e.cpu = {k: max(0.0, cpu_after[k] - cpu_before[k]) for k in cpu_after}
        e2e.redis_connections = redis_connections_received(args.redis_port) - redis_before
        e2e.pg_sessions = await pg_sessions(db) - pg_before

        # --- batches of orders
        requests = batch_requests(setup, args.batch_orders, args.batch_size, "b", rng)
        log(f"batch: {args.batch_orders} orders in {len(requests)} requests of {args.batch_size} over "
            f"{args.batch_connections} connections")
        cpu_before, t_before = cpu_now(), time.perf_counter()
        batch = await measured(Phase("batch", (200,)), requests, args.batch_connections)
        log(f"batch: waiting (at most {args.drain_timeout:.0f} s) until every order left 'received'")
        batch_states, batch_drained = await wait_validated(db, "b", batch.ok * args.batch_size, args.drain_timeout,
                                                           children)
        cpu_after = cpu_now()
        batch_e2e = Phase("batch end to end", (200,), elapsed=time.perf_counter() - t_before)
        batch_e2e.cpu = {k: max(0.0, cpu_after[k] - cpu_before[k]) for k in cpu_after}
        if raw:
            raw.close()

    report(args, setup, ping_phase, intake, states, drained, e2e, batch, batch_states, batch_drained, batch_e2e)
    problems = (ping_phase.ok != args.orders or intake.ok != args.orders or not drained
                or any(not _accepted(s) for s in states) or batch.ok != len(requests) or not batch_drained
                or any(not _accepted(s) for s in batch_states))
    return 1 if problems else 0


def _accepted(state: str) -> bool:
    """Whether an order in this state (or 'rejected: reason') was accepted: neither still received nor rejected.
    On a continuous contract an accepted order may have filled or been cancelled since (an IOC leftover,
    self-trade prevention)."""
    return state != "received" and not state.startswith("rejected")


def end_to_end(states: dict, phase: Phase) -> tuple[int, float, float]:
    """(accepted orders, seconds from the phase's first request to the last validation, accepted/s)."""
    accepted = sum(n for s, (n, _) in states.items() if _accepted(s))
    validated_at = [at for s, (_, at) in states.items() if s != "received" and at]
    last_validated = max(validated_at).timestamp() if validated_at else float("nan")
    seconds = last_validated - phase.wall_start
    return accepted, seconds, accepted / seconds if seconds > 0 else float("nan")


def report(args, setup, ping: Phase, intake: Phase, states: dict, drained: bool, e2e: Phase, batch: Phase,
           batch_states: dict, batch_drained: bool, batch_e2e: Phase) -> None:
    def row(label: str, p: Phase, per_request: int = 1) -> str:
        bad = sum(n for s, n in p.statuses.items() if s not in p.expect) + sum(p.errors.values())
        return (f"{label:<34}{p.sent:>7}{p.ok:>7}{bad:>6}{p.rate:>10.1f}{p.rate * per_request:>10.1f}"
                f"{p.pct(50):>9.2f}{p.pct(99):>9.2f}{max(p.latencies, default=0) * 1000:>9.1f}"
                f"{p.connections_opened:>10}")

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.3f}" if b else "n/a"

    print()
    print(f"order intake benchmark: {args.orders} requests per phase ({args.batch_orders} orders in batches of "
          f"{args.batch_size} over {args.batch_connections} connections), {args.connections} keep-alive connections, "
          f"{len(setup['tokens'])} clients, "
          f"{len(setup['contracts'])} contracts, {os.cpu_count()} cores shared by the server, the worker, "
          "PostgreSQL, Redis and this client")
    print("orders: " + ("limit orders on continuous futures, matched by the book worker (one process)"
                        if args.continuous else "limit orders on auction contracts, validated by the orders worker"))
    print(f"served by python -m ccp.server (uvicorn) x{args.server_workers} processes, CCP_ORDER_WAIT_MS "
          f"{args.order_wait_ms}; Celery prefork x{args.worker_concurrency}; client {args.client}; PostgreSQL "
          f"{'durable (fsync on)' if args.durable else 'fsync off (as bin/test)'}; settings "
          f"{os.environ.get('DJANGO_SETTINGS_MODULE', 'ccp.settings')}")
    print(f"{'':<34}{'sent':>7}{'ok':>7}{'bad':>6}{'req/s':>10}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'new conns':>10}")
    print(row("GET /api/v1/ping (200)", ping, 0))
    print(row("POST /api/v1/orders (201/202)", intake))
    print(row(f"POST /api/v1/orders/batch x{args.batch_size}", batch, args.batch_size))
    print(f"{'ratio single orders / ping':<54}{ratio(intake.rate, ping.rate):>10}"
          f"{ratio(intake.pct(50), ping.pct(50)):>9}{ratio(intake.pct(99), ping.pct(99)):>9}")
    print(f"{'ratio batch orders/s / ping req/s':<54}{ratio(batch.rate * args.batch_size, ping.rate):>10}")
    print("answers of single orders: " + ", ".join(f"{s}: {n}" for s, n in sorted(intake.statuses.items())))
    print()
    for label, st, ok, phase, answered_end in (("single orders", states, drained, intake, intake.wall_end),
                                               ("batch orders", batch_states, batch_drained, batch, batch.wall_end)):
        accepted, seconds, rate = end_to_end(st, phase)
        print(f"{label}: validation " + ", ".join(f"{s}: {n}" for s, (n, _) in sorted(st.items()))
              + ("" if ok else "  (TIMED OUT)"))
        print(f"  accepted orders/s end to end: {rate:.1f}  ({accepted} accepted, first request -> last validated "
              f"{seconds:.2f} s; worker finished {phase.wall_start + seconds - answered_end:.2f} s after the last "
              f"response; ratio to ping req/s {ratio(rate, ping.rate)})")
    print()
    print("CPU seconds per process tree ('others': the rest of the machine; large values there skew the figures),")
    print("connections opened to Redis and sessions opened on PostgreSQL (by anyone):")
    print(f"{'where the time went':<30}{'wall s':>8}  CPU s: " + "".join(f"{k:>9}" for k in ping.cpu)
          + f"{'redis conns':>13}{'pg sessions':>13}")
    for label, p, wall in (("ping", ping, ping.elapsed), ("intake HTTP", intake, intake.elapsed),
                           ("intake start -> all validated", e2e, e2e.elapsed), ("batch HTTP", batch, batch.elapsed),
                           ("batch start -> all validated", batch_e2e, batch_e2e.elapsed)):
        print(f"{label:<30}{wall:>8.2f}         " + "".join(f"{v:>9.2f}" for v in p.cpu.values())
              + f"{p.redis_connections:>13}{p.pg_sessions:>13}")
    for p in (ping, intake, batch):
        if p.timed_out:
            print(f"{p.name}: stopped sending at the phase time limit ({args.phase_timeout:.0f} s)")
        if p.errors or p.samples or p.ok != p.sent:
            print(f"{p.name}: statuses {dict(p.statuses)}, errors {dict(p.errors)}")
            for s in p.samples:
                print(f"  {s}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000, help="measured requests per phase (ping and intake)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per phase")
    parser.add_argument("--clients", type=int, default=32, help="clients (each with a token and a fund lock)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the order mix")
    parser.add_argument("--phase-timeout", type=float, default=90, help="stop sending after this many s per phase")
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="wait at most this many s for the worker to validate the orders")
    parser.add_argument("--request-timeout", type=float, default=30, help="per-request timeout, s")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery prefork processes")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="the load generator's HTTP client: raw asyncio streams (about a third of aiohttp's CPU a "
                             "request) or aiohttp (the figures in BENCHMARKS.md before 2026-12-06 12:00 UTC)")
    parser.add_argument("--book-queues", type=int, default=1,
                        help="CCP_BOOK_QUEUES: the continuous contracts' matchers spread over this many queues, one "
                             "single-process worker each")
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1,
                        help="server processes (CCP_SERVER_WORKERS)")
    parser.add_argument("--order-wait-ms", type=int, default=200, help="CCP_ORDER_WAIT_MS of the server")
    parser.add_argument("--batch-orders", type=int, default=4000, help="orders sent in batches")
    parser.add_argument("--batch-size", type=int, default=100, help="orders per batch request (at most 100)")
    parser.add_argument("--batch-connections", type=int, default=4,
                        help="concurrent connections sending batches (each batch is 100 orders of work)")
    parser.add_argument("--port", type=int, default=8801, help="server port on 127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=25801)
    parser.add_argument("--redis-port", type=int, default=26801)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench",
                        help="PostgreSQL data and logs (wiped at the start of each run)")
    parser.add_argument("--durable", action="store_true",
                        help="PostgreSQL with fsync and synchronous commit on (default: off, as bin/test)")
    parser.add_argument("--child-setup", type=int, metavar="CLIENTS", help=argparse.SUPPRESS)
    parser.add_argument("--continuous", action="store_true",
                        help="orders on continuous futures: matched by the book worker (order in -> matched -> "
                             "committed -> answered), not validated for an auction")
    args = parser.parse_args()
    if args.child_setup is not None:
        child_setup(args.child_setup, args.continuous)
        return 0
    if not 1 <= args.batch_size <= 100:
        parser.error("--batch-size must be 1 to 100")
    for name in ("orders", "connections", "warmup", "clients", "batch_orders", "batch_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop everything.
    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    os.environ["CCP_STATE_DIR"] = args.state_dir  # read by stack.state_dir()
    stack = load_stack()
    state = stack.state_dir("bench")
    log_dir = Path(args.state_dir) / "logs"
    if args.durable and (state / "pg").exists():
        shutil.rmtree(state / "pg")  # services(fresh=False) keeps a cluster; start from an empty one anyway
    log_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    children = Children(log_dir)
    code = 1
    log(f"starting PostgreSQL :{args.pg_port} and Redis :{args.redis_port} in {state} (logs in {log_dir})")
    try:
        with stack.services("bench", args.pg_port, args.redis_port, fresh=not args.durable) as svc_env:
            # DJANGO_SETTINGS_MODULE may be set from outside for what-if runs (a module that star-imports
            # ccp.settings and changes one thing); the figures in BENCHMARKS.md use ccp.settings.
            env = {"DJANGO_SETTINGS_MODULE": "ccp.settings", **os.environ, **svc_env, "PYTHONUNBUFFERED": "1",
                   "CCP_DEBUG": "0", "CCP_SERVER_WORKERS": str(args.server_workers),
                   "CCP_ORDER_WAIT_MS": str(args.order_wait_ms), "CCP_THROTTLE_ORDERS": "",
                   "CCP_BOOK_QUEUES": str(args.book_queues)}
            t0 = time.monotonic()
            run_step("migrate", [py, "manage.py", "migrate", "--noinput"], env, log_dir, 300)
            out = run_step("setup", [py, str(Path(__file__).resolve()), "--child-setup", str(args.clients),
                                     *(["--continuous"] if args.continuous else [])], env, log_dir, 300)
            setup = json.loads(next(line for line in out.splitlines() if line.startswith(SETUP_MARK))[len(SETUP_MARK):])
            log(f"migrated and set up in {time.monotonic() - t0:.1f} s: {len(setup['contracts'])} contracts, "
                f"{len(setup['tokens'])} clients")
            if not setup["celery_app_loaded"]:
                raise RuntimeError(
                    "the served app (ccp.asgi) does not load celery_app.py: order_validate_task.delay() in the server "
                    "would go to Celery's default broker (amqp://localhost:5672) and POST /api/v1/orders would "
                    "answer 500 after storing the order; ccp/__init__.py must import celery_app")
            if not stack.port_free(args.port):
                raise RuntimeError(f"port {args.port} is taken: choose another with --port")
            try:
                server = children.start("server", [py, "-m", "ccp.server", "-b", HOST, "-p", str(args.port),
                                                   "ccp.asgi:application"], env)
                worker = children.start("worker", [py, "-m", "celery", "-A", "celery_app", "worker", "--loglevel",
                                                   "WARNING", "--concurrency", str(args.worker_concurrency),
                                                   "-Q", "orders,auctions,celery"], env)
                # The continuous contracts' matchers: one process per book queue (CCP_BOOK_QUEUES, --book-queues)
                books = [children.start(f"worker-book-{i}", [py, "-m", "celery", "-A", "celery_app", "worker", "-Q",
                                                             f"book-{i}", "-n", f"book{i}@%h", "--loglevel", "WARNING",
                                                             "--concurrency", "1"], env)
                         for i in range(args.book_queues)]
                deadline = time.monotonic() + 60
                while stack.port_free(args.port):
                    children.check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not open its port within 60 s")
                    time.sleep(0.1)
                postmaster = int((state / "pg" / "postmaster.pid").read_text().split()[0])
                cpu_roots = {"server": [server.pid], "worker": [worker.pid], "book": [book.pid for book in books],
                             "postgres": [postmaster], "redis": [p for p in [_redis_pid(args.redis_port)] if p],
                             "client": [os.getpid()]}
                code = asyncio.run(bench(args, env, setup, children, cpu_roots))
            finally:
                # No second Ctrl-C may cut the clean-up short; every step of it is bounded.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                children.stop()  # before services() stops PostgreSQL and Redis
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log(f"error: {exc}")
        code = 1
    log("stopped everything it started")
    return code


def _redis_pid(port: int) -> int | None:
    """The redis-server serving this port (started by services(); only for CPU accounting).
    Redis rewrites its process title to "redis-server 127.0.0.1:PORT"."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"redis-server" in title and (f":{port}".encode() in title or f" {port} ".encode() in title):
                    return int(entry)
    return None


if __name__ == "__main__":
    sys.exit(main())
