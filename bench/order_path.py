"""The server's CPU per order: ``POST /api/v1/orders`` (and ``/orders/batch``) replayed in-process through the
served ASGI application (``ccp.asgi.application``: the edge, Django's handler on the request threads, the
middleware, DRF, the view, the ORM), against a real PostgreSQL and Redis, without the network, the client
or the matcher.

Starts its own throw-away PostgreSQL and Redis (``bin/stack.py``), migrates, creates one continuous BTC/USDC
future and ``--clients`` clients with collateral and an API token each. The server does not wait for the
matcher (``CCP_ORDER_WAIT_MS`` 0: nothing runs it; the orders stay 'received'), so what is measured is what a
server process spends to store an order and answer 202, the part of ``bench/order_intake.py``'s single
orders that is the server's own. Then ``--orders`` single orders (and ``--batches`` batches of 100), sent
``--concurrency`` at a time, after a warm-up; CPU is this process's (``time.process_time``: every thread),
so other load on the machine changes the wall time, not the figure. ``--profile`` prints a cProfile of the
measured requests, every thread's merged (the event loop's and the request threads').

    .venv/bin/python bench/order_path.py [--orders 2000] [--batches 20] [--concurrency 16] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULT_MARK = "BENCH-ORDER-PATH-JSON "


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ThreadProfiles:
    """cProfile in every thread (the event loop's and each request thread's), merged at the end."""

    def __init__(self) -> None:
        import cProfile

        self.make = cProfile.Profile
        self.profiles: list = []
        self.on = False
        threading.setprofile(self._start_here)  # threads started from now on (the request threads are kept)

    def _start_here(self, *_args) -> None:
        if self.on:
            profile = self.make(time.thread_time)  # CPU of this thread: not the waits
            self.profiles.append(profile)
            profile.enable()  # replaces this bootstrap hook in this thread

    def enable(self) -> None:
        self.on = True
        main = self.make(time.thread_time)
        self.profiles.append(main)
        main.enable()

    def disable(self) -> None:
        self.on = False
        threading.setprofile(None)

    def stats(self):
        import pstats

        stats = None
        for profile in self.profiles:
            profile.create_stats()
            stats = pstats.Stats(profile) if stats is None else stats.add(profile)
        return stats


def child(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from datetime import timedelta

    from bench.book_batch import continuous_market
    from bench.order_intake import cpu_by_tree
    from ccp.accounts.models import ApiToken
    from ccp.accounts.services import token_hash
    from ccp.asgi import application  # the served application
    from ccp.clock import utcnow
    from ccp.orders.models import Order

    postmaster = int((Path(args.state_dir) / "bench" / "pg" / "postmaster.pid").read_text().split()[0])
    rng = random.Random(args.seed)
    now = utcnow()
    (contract,), clients = continuous_market(args.clients, now)
    tokens = [f"bench-token-{k:04d}-{rng.getrandbits(64):016x}" for k in range(len(clients))]
    ApiToken.objects.bulk_create([ApiToken(key_hash=token_hash(t), prefix=t[:8], client=c, created_at=now,
                                           expires_at=now + timedelta(days=1))
                                  for c, t in zip(clients, tokens, strict=True)])
    serial = iter(range(1, 10**9))

    def order_body() -> dict:
        side = rng.choice(("buy", "sell"))
        return {"client_order_id": f"p{next(serial)}", "contract": contract.symbol, "side": side,
                "price": str(100000 - (1 if side == "buy" else -1) * rng.randint(1, 50)),
                "quantity": f"0.0{rng.randint(1, 5)}"}

    def request(path: str, body: dict) -> tuple[dict, bytes]:
        data = json.dumps(body).encode()
        token = rng.choice(tokens)
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                            (b"authorization", f"Bearer {token}".encode()),
                            (b"content-length", str(len(data)).encode())],
                "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}, data

    statuses: dict[int, int] = {}

    async def send_one(scope: dict, body: bytes) -> None:
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(message):
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await application(scope, receive, send)

    async def run(requests: list[tuple[dict, bytes]]) -> None:
        queue = list(reversed(requests))

        async def lane():
            while queue:
                await send_one(*queue.pop())

        await asyncio.gather(*(lane() for _ in range(args.concurrency)))

    profiles = ThreadProfiles() if args.profile else None
    results = {}
    loop = asyncio.new_event_loop()
    for name, path, count, make in (
            ("single", "/api/v1/orders", args.orders, lambda: order_body()),
            ("batch", "/api/v1/orders/batch", args.batches, lambda: {"orders": [order_body() for _ in range(100)]})):
        if not count:
            continue
        loop.run_until_complete(run([request(path, make()) for _ in range(args.warmup)]))
        statuses.clear()
        requests = [request(path, make()) for _ in range(count)]
        if profiles and name == args.profile:
            profiles.enable()
        w0, c0, pg0 = time.perf_counter(), time.process_time(), cpu_by_tree({"pg": [postmaster]})["pg"]
        t0 = time.thread_time()
        loop.run_until_complete(run(requests))
        wall, cpu, loop_cpu = time.perf_counter() - w0, time.process_time() - c0, time.thread_time() - t0
        pg = cpu_by_tree({"pg": [postmaster]})["pg"] - pg0
        if profiles and name == args.profile:
            profiles.disable()
            stats = profiles.stats()
        orders = count * (100 if name == "batch" else 1)
        results[name] = {"requests": count, "orders": orders, "statuses": statuses.copy(),
                         "cpu_ms_per_order": cpu * 1000 / orders, "wall_ms_per_order": wall * 1000 / orders,
                         "pg_cpu_ms_per_order": pg * 1000 / orders,
                         "loop_cpu_ms_per_order": loop_cpu * 1000 / orders,
                         "cpu_ms_per_request": cpu * 1000 / count}
        log(f"{name}: {json.dumps(results[name])}")
    out = {"results": results, "orders": Order.objects.count()}
    print(RESULT_MARK + json.dumps(out), flush=True)
    if profiles:
        stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(args.profile_lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000, help="single orders measured")
    parser.add_argument("--batches", type=int, default=20, help="batches of 100 orders measured (0: none)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests before each phase")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (the server's threads: 16)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--profile", choices=("single", "batch"), help="cProfile of that phase's measured requests")
    parser.add_argument("--throttle-orders", default="", metavar="RATE",
                        help="CCP_THROTTLE_ORDERS, e.g. 1000000/s: the order entry throttle counted but never refusing")
    parser.add_argument("--profile-lines", type=int, default=70)
    parser.add_argument("--pg-port", type=int, default=25961)
    parser.add_argument("--redis-port", type=int, default=26961)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-order-path",
                        help="PostgreSQL data (wiped at each start)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    os.environ["CCP_STATE_DIR"] = args.state_dir
    from bench.book_batch import load_stack

    stack = load_stack()
    log(f"starting PostgreSQL :{args.pg_port} and Redis :{args.redis_port} in {stack.state_dir('bench')}")
    with stack.services("bench", args.pg_port, args.redis_port, fresh=True) as svc_env:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ccp.settings", **svc_env, "PYTHONUNBUFFERED": "1",
               "CCP_DEBUG": "0", "CCP_ORDER_WAIT_MS": "0", "CCP_THROTTLE_ORDERS": args.throttle_orders,
               "CCP_DB_PER_THREAD": os.environ.get("CCP_DB_PER_THREAD", "1")}  # as python -m ccp.server
        step = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        if step.returncode:
            log(f"migrate failed:\n{(step.stdout + step.stderr)[-3000:]}")
            return 1
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", *sys.argv[1:]]
        run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        line = next((x for x in run.stdout.splitlines() if x.startswith(RESULT_MARK)), None)
        if run.returncode or line is None:
            log(f"child failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}")
            return 1
    out = json.loads(line[len(RESULT_MARK):])
    print(f"the server's own work per order, in-process through ccp.asgi.application ({out['orders']} orders stored)")
    print(f"{'phase':<8}{'requests':>9}{'orders':>8}{'cpu ms/order':>14}{'cpu ms/request':>16}{'wall ms/order':>15}"
          f"{'pg cpu ms/order':>17}{'loop cpu ms/order':>19}  statuses")
    for name, r in out["results"].items():
        print(f"{name:<8}{r['requests']:>9}{r['orders']:>8}{r['cpu_ms_per_order']:>14.3f}{r['cpu_ms_per_request']:>16.3f}"
              f"{r['wall_ms_per_order']:>15.3f}{r['pg_cpu_ms_per_order']:>17.3f}{r['loop_cpu_ms_per_order']:>19.3f}"
              f"  {r['statuses']}")
    if args.profile:
        print(run.stdout.split(line, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
