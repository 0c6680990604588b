"""Every benchmark under ``bench/`` runs on a small input and exits 0, so a change that breaks one fails here,
not at the next measurement. The figures are not looked at: speed is measured by the benches themselves.

The benches run as ops run them (``python bench/<name>.py``), each with its own throw-away PostgreSQL,
Redis and server on free ports, three at a time. The continuous engine's bench replays a small generated
stream in the shared stream's format (the shared file is not part of the repository)."""

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.processes import REPO, free_port

TIMEOUT_S = 600


def stream_write(path) -> None:
    """2,000 events like the shared stream's: limit and market orders (some with take-profit and stop-loss
    prices), cancels and modifies of earlier orders."""
    rng = random.Random(5)
    live: list[tuple[str, str, str]] = []
    with path.open("w") as out:
        for seq in range(2000):
            kind = rng.choices(["limit", "market", "cancel", "modify"], [58, 20, 13, 9])[0]
            if kind in ("cancel", "modify") and live:
                order_id, side, user = live.pop(rng.randrange(len(live)))
                price = round(100 + rng.uniform(-0.5, 0.5), 2) if kind == "modify" else None
                event = {"id": order_id, "side": side, "price": price, "qty": None, "tp": None, "sl": None,
                         "user": user}
            else:
                kind = "limit" if kind in ("cancel", "modify") else kind
                side, user, order_id = rng.choice(["buy", "sell"]), f"u{rng.randrange(200)}", f"o{seq}"
                sign = 1 if side == "buy" else -1
                mid = round(100 - sign * rng.uniform(0, 0.4), 2)
                event = {"id": order_id, "side": side, "price": mid if kind == "limit" else None,
                         "qty": rng.randint(1, 20),
                         "tp": round(mid + sign * rng.uniform(0.5, 3), 2) if rng.random() < 0.5 else None,
                         "sl": round(mid - sign * rng.uniform(0.5, 3), 2) if rng.random() < 0.3 else None,
                         "user": user}
                if kind == "limit":
                    live.append((order_id, side, user))
            out.write(json.dumps({"seq": seq, "ts": 1735689600000000 + seq * 100, "type": kind, **event}) + "\n")


def services(tmp_path, name: str) -> list[str]:
    return ["--pg-port", str(free_port()), "--redis-port", str(free_port()), "--state-dir", str(tmp_path / name)]


def commands(tmp_path) -> dict[str, list[str]]:
    stream = tmp_path / "stream.jsonl"
    stream_write(stream)
    return {
        "auction": ["--sizes", "300", "--bound-share", "0.3", *services(tmp_path, "auction")],
        "book_batch": ["--sizes", "1,10", "--batches", "3", "--contracts", "2", *services(tmp_path, "book_batch")],
        "book_engine": ["--stream", str(stream), "--runs", "1"],
        "liquidation_book": ["--sizes", "50", "--rounds", "2", *services(tmp_path, "liquidation_book")],
        "liquidation_db": ["--sizes", "100", "--runs", "1", *services(tmp_path, "liquidation_db")],
        "liquidation_scan": ["--sizes", "1000", "--runs", "1"],
        "order_path": ["--orders", "50", "--batches", "2", "--warmup", "10", *services(tmp_path, "order_path")],
        "order_intake": ["--continuous", "--orders", "100", "--warmup", "20", "--batch-orders", "200",
                         "--port", str(free_port()), *services(tmp_path, "order_intake")],
        "ws_fanout": ["--subscribers", "20", "--changes", "10", "--interval", "0.05", "--settle", "1",
                      "--client-procs", "1", "--port", str(free_port()), *services(tmp_path, "ws_fanout")],
    }


# A line each bench prints only when it got to its figures.
PRINTS = {
    "auction": "summary (seconds;",
    "book_batch": "medians per batch",
    "book_engine": "trades:",
    "liquidation_book": "ms/liq = total",
    "liquidation_db": "load average before / after",
    "liquidation_scan": "positions   tick",
    "order_path": "the server's own work per order",
    "order_intake": "accepted orders/s end to end",
    "ws_fanout": "fan-out: 20 subscribers",
}


def run(name: str, args: list[str]) -> tuple[int, str, float]:
    began = time.monotonic()
    try:
        done = subprocess.run([sys.executable, f"bench/{name}.py", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout + done.stderr, time.monotonic() - began
    except subprocess.TimeoutExpired as exc:
        return -1, f"timed out after {TIMEOUT_S} s\n{exc.stdout or ''}{exc.stderr or ''}", time.monotonic() - began


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[int, str, float]]:
    # under /var/tmp as the benches' own defaults: PostgreSQL runs as its own user, which pytest's
    # temporary directories (private to the test's user) keep out
    states = Path(tempfile.mkdtemp(prefix="ccp-bench-test-", dir="/var/tmp"))
    states.chmod(0o755)
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = {name: pool.submit(run, name, args) for name, args in commands(states).items()}
            return {name: future.result() for name, future in futures.items()}
    finally:
        shutil.rmtree(states, ignore_errors=True)


@pytest.mark.timeout(3 * TIMEOUT_S)
@pytest.mark.parametrize("name", sorted(PRINTS))
def test_the_benchmark_runs_to_its_figures(outcomes, name):
    code, output, _ = outcomes[name]
    assert code == 0, output[-4000:]
    assert PRINTS[name] in output, output[-4000:]


def test_every_benchmark_is_run_here():
    scripts = {path.stem for path in (REPO / "bench").glob("*.py")
               if "__main__" in path.read_text() and path.stem != "__init__"}
    assert scripts == set(PRINTS)
