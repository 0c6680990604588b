"""Local services for ccp: a throw-away PostgreSQL cluster and a Redis server.

Used by ``bin/run`` (the whole system) and ``bin/test`` (the test suite). Standard library
only, so it runs before and outside the virtualenv. PostgreSQL and Redis come from Debian's
packages (``bin/bootstrap.sh`` installs them); nothing here talks to a system-wide server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[ccp] {msg}", flush=True)


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    sys.exit(f"[ccp] PostgreSQL's {name} not found: run bin/bootstrap.sh (installs Debian's postgresql)")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port: int, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while port_free(port):
        if time.monotonic() > deadline:
            sys.exit(f"[ccp] {what} did not open port {port} within {timeout_s:.0f} s")
        time.sleep(0.05)


@dataclass
class Postgres:
    """A private cluster: trust auth on 127.0.0.1 only, superuser ``ccp``."""

    data_dir: Path
    port: int
    fast: bool = False  # fsync off: for throw-away test clusters only
    owner: str | None = field(default=None)

    def __post_init__(self) -> None:
        # initdb refuses to run as root; run the server as the postgres system user then.
        if os.geteuid() == 0:
            self.owner = "postgres"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else argv

    def _chown(self, path: Path) -> None:
        if self.owner:
            pw = pwd.getpwnam(self.owner)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        if not port_free(self.port):
            sys.exit(f"[ccp] port {self.port} is taken: set another with the PG port variable")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown(self.data_dir)
            subprocess.run(
                self._as_owner([pg_bin("initdb"), "-D", str(self.data_dir), "-U", "ccp",
                                "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                check=True, stdout=subprocess.DEVNULL,
            )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir}"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += " -c max_connections=200"
        subprocess.run(
            self._as_owner([pg_bin("pg_ctl"), "-D", str(self.data_dir), "-o", options,
                            "-l", str(self.data_dir / "server.log"), "-w", "-t", "60", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, "PostgreSQL")

    def ensure_database(self, name: str) -> None:
        exists = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "ccp", "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "ccp", "-d", "postgres",
                            "-qc", f'CREATE DATABASE "{name}"'], check=True)

    def stop(self) -> None:
        subprocess.run(self._as_owner([pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, name: str) -> str:
        return f"postgres://ccp@127.0.0.1:{self.port}/{name}"


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or sys.exit("[ccp] redis-server not found: run bin/bootstrap.sh")
        if not port_free(self.port):
            sys.exit(f"[ccp] port {self.port} is taken: set another with the Redis port variable")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(self.port, "Redis")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@dataclass
class Anvil:
    """A local Ethereum node; with a state file it keeps the chain across runs (like the database).

    anvil writes its state file on SIGTERM and, with ``--state-interval``, every ``state_interval``
    seconds (1, the shortest it takes, unless CCP_ANVIL_STATE_INTERVAL_SECONDS says otherwise): a SIGKILL
    loses at most the last interval's blocks. anvil rewrites the file in place (truncate, then write), so a
    kill during a write leaves a torn file it refuses to load; ``start`` then keeps the torn file aside and
    starts from the copy of the last state it loaded (taken at each start), or else from an empty chain.
    """

    port: int
    state_file: Path | None = None
    block_time: int | None = None
    proc: subprocess.Popen | None = None
    state_interval: int = field(default_factory=lambda: env_int("CCP_ANVIL_STATE_INTERVAL_SECONDS", 1))

    def start(self) -> None:
        binary = os.environ.get("CCP_ANVIL") or shutil.which("anvil")
        if not binary or not os.path.exists(binary):
            sys.exit("[ccp] anvil not found: run bin/bootstrap.sh (installs it from npm)")
        argv = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", "31337", "--silent"]
        if self.block_time:
            argv += ["--block-time", str(self.block_time)]
        if not self.state_file:
            if not self._launch(argv):
                sys.exit("[ccp] anvil did not start")
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--state", str(self.state_file), "--state-interval", str(self.state_interval)]
        backup, loading = (self.state_file.with_name(self.state_file.name + suffix) for suffix in (".bak", ".loading"))
        if self.state_file.exists():  # copied before anvil starts rewriting it; kept once anvil has loaded it
            shutil.copyfile(self.state_file, loading)
        if not self._launch(argv):
            if not self.state_file.exists():
                sys.exit("[ccp] anvil did not start")
            torn = self.state_file.with_name(self.state_file.name + ".torn")
            self.state_file.replace(torn)
            loading.unlink(missing_ok=True)
            if backup.exists():
                shutil.copyfile(backup, self.state_file)
            log(f"anvil could not load {self.state_file} (a kill while it wrote it?): kept as {torn.name}; "
                + ("starting from the state of the previous start" if backup.exists() else "starting a new chain"))
            if not self._launch(argv):
                sys.exit("[ccp] anvil did not start")
        if loading.exists():
            loading.replace(backup)

    def _launch(self, argv: list[str], timeout_s: float = 30.0) -> bool:
        """Start anvil; True once it listens, False if it exited (e.g. it could not load the state file)."""
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while port_free(self.port):
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"[ccp] anvil did not open port {self.port} within {timeout_s:.0f} s")
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # anvil writes its --state file on SIGTERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# anvil's first default account: a well-known development key, never for real funds.
ANVIL_OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def state_dir(kind: str) -> Path:
    # Outside the checkout so the postgres user can reach it even when the checkout is private.
    tag = f"{os.geteuid()}-{abs(hash(str(REPO))) % 10**8:08d}" if kind == "test" else f"{os.geteuid()}-run"
    return Path(os.environ.get("CCP_STATE_DIR", f"/var/tmp/ccp-{tag}")) / kind


@contextlib.contextmanager
def services(kind: str, pg_port: int, redis_port: int, fresh: bool, anvil_port: int | None = None):
    """Start PostgreSQL, Redis (and anvil); yield the environment that points Django at them; stop all."""
    pg = Postgres(state_dir(kind) / "pg", pg_port, fast=fresh)
    if fresh and pg.data_dir.exists():
        shutil.rmtree(pg.data_dir)
    redis = Redis(redis_port)
    started: list = []
    try:
        pg.start()
        started.append(pg)
        pg.ensure_database("ccp")
        redis.start()
        started.append(redis)
        env = {"DATABASE_URL": pg.url("ccp"), "REDIS_URL": redis.url()}
        if anvil_port:
            # The run keeps its chain (and its 1 s blocks) across restarts; tests get a fresh, automining one.
            anvil = Anvil(anvil_port, None if fresh else state_dir(kind) / "anvil-state.json",
                          None if fresh else 1)
            anvil.start()
            started.append(anvil)
            env["ANVIL_URL"] = anvil.url()
        yield env
    finally:
        for svc in reversed(started):
            svc.stop()


def run_children(commands: dict[str, list[str]], env: dict[str, str], *, max_restarts: int = 5,
                 window_s: float = 60.0) -> int:
    """Start each command and keep it running: a child that exits is started again, after a pause
    that grows with its recent restarts, with a log line each time. A child that needed more than
    ``max_restarts`` restarts within ``window_s`` is crash-looping: then everything stops, with a
    message, and the exit code is the child's. Ctrl-C / SIGTERM stop every child."""
    procs: dict[str, subprocess.Popen] = {}
    restarts: dict[str, list[float]] = {name: [] for name in commands}
    due: dict[str, float] = {}  # child -> when to start it again
    stopping = False

    def start(name: str) -> None:
        procs[name] = subprocess.Popen(commands[name], env=env, cwd=REPO, start_new_session=True)
        log(f"{name} started (pid {procs[name].pid})")

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    code = 0
    try:
        for name in commands:
            start(name)
        while not stopping:
            now = time.monotonic()
            for name, proc in procs.items():
                if name in due or proc.poll() is None:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what it leaves behind (a worker's pool processes)
                recent = restarts[name] = [t for t in restarts[name] if now - t < window_s]
                if len(recent) >= max_restarts:
                    log(f"{name} exited with {proc.returncode} after {len(recent)} restarts within {window_s:.0f} s: "
                        "it keeps failing, stopping everything (its log above says why)")
                    code, stopping = proc.returncode if proc.returncode > 0 else 1, True
                    break
                recent.append(now)
                due[name] = now + len(recent) - 1  # at once, then 1 s, 2 s, ... while it keeps exiting
                log(f"{name} exited with {proc.returncode}; restarting it (restart {len(recent)} of at most "
                    f"{max_restarts} within {window_s:.0f} s)")
            for name, at in list(due.items()):
                if not stopping and now >= at:
                    del due[name]
                    start(name)
            time.sleep(0.2)
    finally:
        log("stopping")
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
    return code


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def simulator_command(env: dict[str, str], port: int) -> list[str] | None:
    """The market simulator as bin/run starts it (None: ``CCP_SIMULATOR=0``). ``CCP_SIMULATOR_BOUND_SHARE``,
    a number from 0 to 1 (default and empty: 0), makes that share of its traders collateral-bound
    (``ccp_simulate --bound-share``); anything else stops bin/run with a message, before anything starts."""
    if env.get("CCP_SIMULATOR", "1") == "0":
        return None
    command = [sys.executable, "manage.py", "ccp_simulate", "--url", f"http://127.0.0.1:{port}"]
    text = env.get("CCP_SIMULATOR_BOUND_SHARE", "").strip() or "0"
    try:
        share = float(text)
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1:  # also refuses nan
        sys.exit(f"[ccp] CCP_SIMULATOR_BOUND_SHARE must be a number from 0 to 1 (the share of the simulator's "
                 f"traders that are collateral-bound), not {text!r}")
    return [*command, "--bound-share", repr(share)] if share else command


def ops_children(host: str, port: int) -> dict[str, list[str]]:
    """The clearing house's processes as bin/run starts them: the server (``CCP_SERVER_WORKERS``
    processes, default one per core), one Celery worker per queue (celery_app.py: a long auction solve
    never delays order validation) and beat."""
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "celery_app"]
    return {
        "server": [py, "-m", "ccp.server", "-b", host, "-p", str(port), "ccp.asgi:application"],
        "worker-orders": [*celery, "worker", "-Q", "orders", "-n", "orders@%h", "--loglevel", "INFO",
                          "--concurrency", "2"],
        "worker-auctions": [*celery, "worker", "-Q", "auctions", "-n", "auctions@%h", "--loglevel", "INFO",
                            "--concurrency", "1"],
        "worker": [*celery, "worker", "-Q", "celery", "-n", "default@%h", "--loglevel", "INFO", "--concurrency", "1"],
        # One process for every book queue: a contract's matcher keeps its engine in that process's memory.
        "worker-book": [*celery, "worker", "-Q", ",".join(f"book-{i}" for i in range(env_int("CCP_BOOK_QUEUES", 1))),
                        "-n", "book@%h", "--loglevel", "INFO", "--concurrency", "1"],
        "beat": [*celery, "beat", "--loglevel", "INFO",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
    }


def cmd_run() -> int:
    py = sys.executable
    host, port = os.environ.get("CCP_HOST", "127.0.0.1"), env_int("CCP_PORT", 8000)
    simulator = simulator_command(dict(os.environ), port)  # a bad setting stops bin/run before anything starts
    with services("run", env_int("CCP_PG_PORT", 15439), env_int("CCP_REDIS_PORT", 16399), fresh=False,
                  anvil_port=env_int("CCP_ANVIL_PORT", 18545)) as svc_env:
        env = {**os.environ, **svc_env, "PYTHONUNBUFFERED": "1"}
        env.setdefault("CCP_CHAIN_URL", svc_env["ANVIL_URL"])
        env.setdefault("CCP_CHAIN_OPERATOR_KEY", ANVIL_OPERATOR_KEY)
        env.setdefault("CCP_SIGNIN_DOMAIN", f"{'localhost' if host == '127.0.0.1' else host}:{port}")
        env.setdefault("CCP_DEMO_FAUCET", "1")  # POST /api/v1/faucet: demo USDC and gas for a fresh wallet
        manage = [py, "manage.py"]
        deploy = ["chain_deploy", "--url", env["CCP_CHAIN_URL"], "--operator-key", env["CCP_CHAIN_OPERATOR_KEY"],
                  "--demo-token", "USDC"]
        for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v", "0"], ["ccp_demo"], deploy):
            subprocess.run(manage + step, env=env, cwd=REPO, check=True)
        log(f"API       http://localhost:{port}/api/v1/health")
        log(f"API docs  http://localhost:{port}/api/v1/docs/")
        password = env.get("CCP_DEMO_PASSWORD", "operator")
        log(f"admin     http://localhost:{port}/admin/  (user: operator, password: {password})")
        log(f"WebSocket ws://localhost:{port}/ws/v1/system")
        log(f"chain     {env['CCP_CHAIN_URL']} (anvil; chain id, FundLock and tokens: "
            f"http://localhost:{port}/api/v1/chain; demo USDC and gas: POST /api/v1/faucet)")
        log("Ctrl-C stops everything")
        children = ops_children(host, port)
        if simulator is not None:
            log(f"market simulator on (CCP_SIMULATOR=0 turns it off; CCP_SIMULATOR_BOUND_SHARE=0.3 makes 30% of its "
                f"traders collateral-bound): manage.py {' '.join(simulator[2:])}; auctions every "
                f"{env.get('CCP_AUCTION_INTERVAL_SECONDS', '10')} s, see Auctions in the admin")
            children["simulator"] = simulator
        return run_children(children, env, max_restarts=env_int("CCP_RUN_MAX_RESTARTS", 5))


def cmd_test(pytest_args: list[str]) -> int:
    # Ports below Linux's ephemeral range (32768-60999), so no outgoing connection holds them.
    ports = env_int("CCP_TEST_PG_PORT", 25439), env_int("CCP_TEST_REDIS_PORT", 26399)
    with services("test", *ports, fresh=True, anvil_port=env_int("CCP_TEST_ANVIL_PORT", 28545)) as svc_env:
        env = {**os.environ, **svc_env, "PYTHONUNBUFFERED": "1"}
        # The static files the served pages use (admin CSS in the browser tests), as bin/run has them.
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], env=env, cwd=REPO,
                       check=True)
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=REPO).returncode


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        sys.exit("usage: stack.py run | test [pytest args]")
    sys.exit(cmd_run() if sys.argv[1] == "run" else cmd_test(sys.argv[2:]))
