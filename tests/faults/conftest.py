"""A clearing house of the fault tests' own, on the real stack, and the checks each fault ends with.

PostgreSQL, Redis and anvil are bin/stack.py's ``Postgres``, ``Redis`` and ``Anvil`` on free ports (not
pytest's own: they are restarted under load). The database is migrated and seeded with the demo series,
FundLock is deployed, the traders deposit on chain; then the server, a Celery worker per queue and beat
run under bin/run's supervisor (``run_children``), as ``bin/run`` starts them, and the deposit monitor credits
the traders. Traders sign in with their wallets and send orders over HTTP from threads of the test.
Every process is stopped (or paused) by its pid.

A fault test ends with ``assert_recovered`` (auctions clear again within 30 s of the fault, the API
stores orders again: 201 or 202) and ``assert_end_state``: every order stored exists and was validated, each
applied auction's fills were booked exactly once, and ``manage.py ccp_check`` exits 0 (with the chain:
fund locks equal the contract's balances, every confirmed batch applied).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.processes import REPO, Supervisor, bin_stack, free_port, wait_for

TRADERS = 8
FUNDS = Decimal(10_000_000)
RECOVERY_S = 30  # issue 10: the system serves and clears again within 30 s of a fault
STORED = (200, 201, 202)  # answers to an order that say it is stored (201 validated, 202 received, 200 resent)
BOOK_LOCK = 7001  # ccp.db's advisory lock namespace of a pair's book

SEED = """
from decimal import Decimal
from django.conf import settings
from django.db import transaction
from eth_account import Account
from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.connect import operator_account, web3_for
from ccp.settlement.models import ChainContract
from ccp.settlement.services import operator_nonce_take, token_units

w3 = web3_for(settings.CCP_CHAIN_URL)
usdc = Currency.objects.get(symbol="USDC")
token = w3.eth.contract(address=w3.to_checksum_address(usdc.token_address), abi=load_artifact("TestToken")["abi"])
vault = w3.eth.contract(address=w3.to_checksum_address(ChainContract.objects.get(name="FundLock").address),
                        abi=load_artifact("FundLock")["abi"])
operator = operator_account(settings.CCP_CHAIN_OPERATOR_KEY)
units = token_units(Decimal({funds!r}), usdc.decimals)
traders = [Account.from_key(key) for key in {keys!r}]

def send(signer, call, nonce):
    tx = call.build_transaction({{"from": signer.address, "nonce": nonce, "gas": 200_000,
                                  "gasPrice": w3.eth.gas_price}})
    return w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)

def mined(hashes):
    for tx in hashes:
        assert w3.eth.wait_for_transaction_receipt(tx, timeout=60).status == 1

minted = []
for trader in traders:
    w3.provider.make_request("anvil_setBalance", [trader.address, hex(10**20)])
    with transaction.atomic():  # settlement takes the operator's nonces from this row too
        nonce = operator_nonce_take(address=operator.address.lower(), w3=w3)
    minted.append(send(operator, token.functions.mint(trader.address, units), nonce))
mined(minted)
mined([tx for trader in traders for tx in (send(trader, token.functions.approve(vault.address, units), 0),
                                            send(trader, vault.functions.deposit(token.address, units), 1))])
"""


def trader_accounts() -> list:
    return [Account.from_key(hashlib.sha256(f"ccp-fault-trader-{n}".encode()).digest()) for n in range(TRADERS)]


class FaultStack:
    def __init__(self, root: Path) -> None:
        stack = bin_stack()
        self.root = root
        self.pg = stack.Postgres(root / "pg", free_port(), fast=True)
        self.redis = stack.Redis(free_port())
        self.anvil = stack.Anvil(port=free_port(), block_time=1)  # blocks go on, so confirmations come
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = self.pg.url("ccp")
        self.env = {**os.environ, "DATABASE_URL": self.db_url, "REDIS_URL": self.redis.url(),
                    "CCP_CHAIN_URL": self.anvil.url(), "CCP_CHAIN_OPERATOR_KEY": stack.ANVIL_OPERATOR_KEY,
                    "PYTHONUNBUFFERED": "1", "CCP_SIGNIN_DOMAIN": f"127.0.0.1:{self.port}",
                    # the load's traders all sign in from one address and send in bursts
                    "CCP_THROTTLE_SIGNIN_IP": "", "CCP_THROTTLE_ORDERS": ""}
        self.supervisor: Supervisor | None = None
        self._db: psycopg.Connection | None = None

    # --- lifecycle ---

    def start(self) -> None:
        self.pg.start()
        self.pg.ensure_database("ccp")
        self.redis.start()
        self.anvil.start()
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("ccp_demo")
        self.manage("chain_deploy", "--url", self.env["CCP_CHAIN_URL"], "--operator-key",
                    self.env["CCP_CHAIN_OPERATOR_KEY"], "--demo-token", "USDC")
        traders = trader_accounts()
        self.manage("shell", "-c", SEED.format(funds=str(FUNDS), keys=[t.key.to_0x_hex() for t in traders]))
        self.supervisor = Supervisor(bin_stack().ops_children("127.0.0.1", self.port), self.root / "processes.log",
                                     env=self.env)
        wait_for(lambda: self._get("/api/v1/health"), 60, "daphne to serve")
        wait_for(lambda: self.sql("SELECT COUNT(*) FROM accounts_fundlock WHERE fundlock >= %s", [FUNDS])[0][0]
                 == len(traders), 60, "the deposit monitor to credit the traders")

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self._db is not None:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
        self.anvil.stop()
        self.redis.stop()
        self.pg.stop()

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=check,
                              capture_output=True, text=True, timeout=300)

    def _get(self, path: str):
        with contextlib.suppress(requests.RequestException, ValueError):
            response = requests.get(self.url + path, timeout=5)
            return response.json() if response.status_code == 200 else None
        return None

    # --- faults ---

    def pid(self, name: str) -> int:
        return self.supervisor.pids(name)[-1]

    def kill(self, name: str) -> int:
        """SIGKILL the child ``name`` with its whole process group (a worker's pool processes too)."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def restart_postgres(self, down_s: float) -> None:
        self.pg.stop()
        time.sleep(down_s)
        self.pg.start()

    @contextlib.contextmanager
    def settlement_send_started(self, timeout_s: float = 90):
        """Yield the batch id of a settlement batch whose transaction the worker is sending. Once auction
        movements wait for settlement, a connection of ours locks them (FOR UPDATE), so settlement's
        submit waits inside its transaction when it writes their trackings (nonce taken, transaction
        signed). Then anvil is paused (SIGSTOP) and the rows released: the batch commits and its send,
        after the commit, waits for the node. anvil goes on (SIGCONT) when the block ends."""
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.db_url) as conn:
            while time.monotonic() < deadline:
                conn.rollback()
                (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM settlement_settlementbatch").fetchone()
                if not conn.execute("""
                        SELECT m.id FROM settlement_cashmovement m WHERE m.origin = 'auction' AND m.amount <> 0
                          AND NOT EXISTS (SELECT 1 FROM settlement_cashmovementtracking t
                                          WHERE t.cash_movement_id = m.id AND t.state <> 'failed'
                                            AND t.state <> 'replaced')
                        ORDER BY m.id FOR UPDATE""").fetchall():
                    time.sleep(0.05)
                    continue
                blocked = "SELECT 1 FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                wait_for(lambda: conn.execute(blocked).fetchall(), deadline - time.monotonic(),  # noqa: B023
                         "settlement's submit to wait for the movements")
                os.kill(self.anvil.proc.pid, signal.SIGSTOP)
                try:
                    conn.commit()
                    new = "SELECT batch_id FROM settlement_settlementbatch WHERE id > %s ORDER BY id"
                    batch = wait_for(lambda: conn.execute(new, [last]).fetchone(), 30,  # noqa: B023
                                     "the batch to commit")
                    time.sleep(0.2)  # its send (after the commit) is under way
                    yield batch[0]
                finally:
                    os.kill(self.anvil.proc.pid, signal.SIGCONT)
                return
            raise AssertionError(f"no settlement batch was sent within {timeout_s} s")

    def restart_redis(self, down_s: float) -> None:
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()

    # --- reading the stack's database ---

    def sql(self, query: str, params: tuple | list = ()) -> list[tuple]:
        """Rows of a read on the stack's database; reconnects (for up to a minute) after a restart."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._db is None or self._db.closed:
                    self._db = psycopg.connect(self.db_url, autocommit=True, connect_timeout=5)
                return self._db.execute(query, params).fetchall()
            except psycopg.OperationalError:
                self._db = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def pair_id(self, base: str = "BTC") -> int:
        return self.sql("SELECT p.id FROM contracts_pair p JOIN contracts_currency b ON b.id = p.base_id "
                        "WHERE b.symbol = %s", [base])[0][0]

    @contextlib.contextmanager
    def apply_started(self, base: str = "BTC", timeout_s: float = 90):
        """Yield the id of an auction of the pair whose apply has started and is waiting for the pair's
        book: once an auction is solving, a connection of ours holds the book lock shared (as a cancel
        does) until the block ends, so the apply (which locked its auction row first) waits for it."""
        pair = self.pair_id(base)
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.db_url) as conn:
            while time.monotonic() < deadline:
                conn.rollback()
                found = conn.execute("""SELECT id FROM matching_auction
                                        WHERE "group" = %s AND state IN ('closed', 'solved')""",
                                     [f"{base}/USDC"]).fetchall()
                if not found:
                    time.sleep(0.01)
                    continue
                (auction,) = found[0]
                conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [BOOK_LOCK, pair])
                while time.monotonic() < deadline:
                    state = conn.execute("SELECT state FROM matching_auction WHERE id = %s", [auction]).fetchone()[0]
                    if state == "applied":
                        break  # it was applied before we held the book: wait for the next one
                    waiting = conn.execute("""SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s
                                              AND objid = %s AND mode = 'ExclusiveLock' AND NOT granted""",
                                           [BOOK_LOCK, pair]).fetchall()
                    if waiting and state == "solved":
                        yield auction
                        conn.commit()
                        return
                    time.sleep(0.01)
            raise AssertionError(f"no auction's apply started within {timeout_s} s")


@pytest.fixture(scope="module")
def stack():
    if not os.environ.get("CCP_ANVIL"):
        pytest.skip("needs anvil: run bin/test")
    root = Path(f"/var/tmp/ccp-faults-{os.getpid()}-{uuid.uuid4().hex[:6]}")  # the postgres user reaches it
    fault_stack = FaultStack(root)
    try:
        fault_stack.start()
        yield fault_stack
    finally:
        fault_stack.stop()
        print(f"--- processes.log\n{(root / 'processes.log').read_text()[-6000:]}"
              if (root / "processes.log").exists() else "")
        if os.environ.get("CCP_FAULTS_KEEP_LOG"):
            shutil.copy(root / "processes.log", os.environ["CCP_FAULTS_KEEP_LOG"])
        shutil.rmtree(root, ignore_errors=True)


# --- traders ---------------------------------------------------------------------------------

@dataclass
class Sent:
    trader: int
    body: dict
    statuses: list = field(default_factory=list)  # every answer: an HTTP status or an exception's name
    order_id: int | None = None
    at: float = 0.0  # time.time() of the first send


class OrderLoad:
    """Traders sending crossing limit orders on a few BTC contracts from threads, each order with a
    fresh client_order_id. What each send got back is kept; a send without an answer (a timeout, a
    refused connection) is sent again later with the same id, as a client would."""

    def __init__(self, stack: FaultStack, threads: int = 3, pause_s: float = 0.12, seed: int = 1) -> None:
        self.stack, self.threads, self.pause_s = stack, threads, pause_s
        self.rng = random.Random(seed)
        self.accounts = trader_accounts()
        self.tokens: list[str] = []
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.contracts = self._contracts()

    def _contracts(self) -> list[dict]:
        # The latest BTC expiry: trading for days; calls around the money and the future.
        rows = self.stack.sql("""
            SELECT k.symbol, k.kind, k.strike_px, k.floor_px, k.cap_px, k.tick_size, k.lot_size
            FROM contracts_contract k JOIN contracts_pair p ON p.id = k.pair_id
            JOIN contracts_currency b ON b.id = p.base_id
            WHERE b.symbol = 'BTC' AND k.state = 'listed'
              AND k.expiry_date = (SELECT MAX(expiry_date) FROM contracts_contract)
              AND (k.kind = 'future' OR k.strike_px IN (90000, 100000, 110000)) ORDER BY k.symbol""")
        names = ["symbol", "kind", "strike", "floor", "cap", "tick", "lot"]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def sign_in(self) -> None:
        for account in self.accounts:
            challenge = self._post("/api/v1/auth/nonce", {"address": account.address}).json()
            signature = account.sign_message(encode_defunct(text=challenge["message"])).signature.to_0x_hex()
            self.tokens.append(self._post("/api/v1/auth/token", {"message": challenge["message"],
                                                                 "signature": signature}).json()["token"])

    def _post(self, path: str, body: dict, token: str = "", timeout_s: float = 10) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.stack.url + path, json=body, headers=headers, timeout=timeout_s)

    def _order(self, rng: random.Random) -> tuple[int, dict]:
        contract = rng.choice(self.contracts)
        spot = Decimal(100000)
        if contract["kind"] == "future":
            fair = spot
        else:
            fair = max(spot - contract["strike"], Decimal(0)) + 300
        side = rng.choice(["buy", "sell"])
        skew = Decimal(rng.uniform(-0.02, 0.04)) * (1 if side == "buy" else -1)
        low = contract["floor"] if contract["kind"] == "future" else Decimal(0)
        price = (fair * (1 + skew) / contract["tick"]).quantize(Decimal(1)) * contract["tick"]
        price = max(price, low + contract["tick"])
        quantity = contract["lot"] * rng.randint(1, 5)
        return rng.randrange(TRADERS), {"client_order_id": uuid.uuid4().hex, "contract": contract["symbol"],
                                        "side": side, "kind": "limit", "price": format(price.normalize(), "f"),
                                        "quantity": format(quantity.normalize(), "f")}

    def send(self, sent: Sent) -> None:
        try:
            response = self._post("/api/v1/orders", sent.body, self.tokens[sent.trader])
            status = response.status_code
            if status in STORED:
                sent.order_id = response.json()["id"]
        except requests.RequestException as exc:
            status = type(exc).__name__
        with self._lock:
            sent.statuses.append(status)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            trader, body = self._order(rng)
            sent = Sent(trader, body, at=time.time())
            with self._lock:
                self.sent.append(sent)
            self.send(sent)
            self._stop.wait(self.pause_s)

    def start(self) -> OrderLoad:
        if not self.tokens:
            self.sign_in()
        self._stop.clear()
        self._workers = [threading.Thread(target=self._run, args=(self.rng.random(),), daemon=True)
                         for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def resend_unanswered(self) -> None:
        """Send again, with the same client_order_id, every order that got no answer."""
        for sent in self.sent:
            if sent.order_id is None and not any(isinstance(s, int) for s in sent.statuses):
                self.send(sent)

    def accepted(self) -> dict[int, Sent]:
        """Orders the API answered 202 (or 200 for a resend of one it had stored), by order id."""
        return {s.order_id: s for s in self.sent if s.order_id is not None}

    def statuses(self) -> Counter:
        return Counter(status for s in self.sent for status in s.statuses)

    def accepted_since(self, since: float, until: float = float("inf")) -> list[int]:
        """Ids of the orders first sent from ``since`` (until ``until``) and answered 201 or 202 (stored)."""
        with self._lock:
            return [s.order_id for s in self.sent if since <= s.at < until and {201, 202} & set(s.statuses)]


@pytest.fixture
def load(stack):
    traders = OrderLoad(stack)
    yield traders
    traders.stop()


# --- the checks ------------------------------------------------------------------------------

def wait_auction_applied(stack: FaultStack, timeout_s: float = 60) -> None:
    """Until an auction with fills has been applied (the stack is clearing)."""
    wait_for(lambda: stack.sql("SELECT 1 FROM matching_auction WHERE state = 'applied' AND fills_count > 0"),
             timeout_s, "a first auction with fills")


def assert_recovered(stack: FaultStack, load: OrderLoad, fault_over: float) -> float:
    """Within RECOVERY_S of the fault's end: every auction opened before it is applied, an auction got
    applied after it (the pair clears again), and the orders sent in the first 10 s after it were
    answered 202 and validated, every one (a worker process that kept a dead connection would fail
    its share). Returns the seconds it took."""
    over = datetime.fromtimestamp(fault_over, UTC)

    def cleared() -> bool:
        rows = stack.sql("SELECT opened_at < %s, state, applied_at > %s FROM matching_auction "
                         "WHERE opened_at > %s - interval '10 min'", [over, over, over])
        if not (all(state == "applied" for before, state, _ in rows if before)
                and any(applied_after for _, _, applied_after in rows) and time.time() > fault_over + 10):
            return False
        sent = load.accepted_since(fault_over, until=fault_over + 10)
        waiting = stack.sql("SELECT COUNT(*) FROM orders_order WHERE id = ANY(%s) AND state = 'received'", [sent])
        return bool(sent) and waiting[0][0] == 0

    while time.time() < fault_over + RECOVERY_S:
        if cleared():
            return time.time() - fault_over
        time.sleep(0.25)
    auctions = stack.sql("SELECT id, state, opened_at, closed_at, solved_at, applied_at FROM matching_auction "
                         "ORDER BY id DESC LIMIT 3")
    waiting = stack.sql("SELECT COUNT(*) FROM orders_order WHERE state = 'received'")[0][0]
    raise AssertionError(f"not clearing {RECOVERY_S} s after the fault ({over}): last auctions {auctions}, "
                         f"{waiting} orders waiting for validation, answers {load.statuses()}")


def assert_end_state(stack: FaultStack, load: OrderLoad, settled: bool = False) -> None:
    """After the load stopped: no order answered 202 is lost (each exists and left 'received'), each
    applied auction's fills are booked once (every order's filled quantity is the sum of its fills in
    applied auctions' results), every auction got applied, and ccp_check exits 0. With ``settled``,
    every cash movement got confirmed on chain first."""
    load.stop()
    load.resend_unanswered()
    accepted = load.accepted()
    assert accepted, f"no order was accepted: {load.statuses()}"

    def drained() -> bool:
        unapplied = stack.sql("SELECT COUNT(*) FROM matching_auction WHERE state <> 'applied'")[0][0]
        waiting = stack.sql("SELECT COUNT(*) FROM orders_order WHERE id = ANY(%s) AND state = 'received'",
                            [list(accepted)])[0][0]
        return unapplied == 0 and waiting == 0

    wait_for(drained, 90, "every accepted order validated and every auction applied")
    if settled:
        wait_for(lambda: not stack.sql("""
            SELECT 1 FROM settlement_cashmovement m WHERE m.amount <> 0 AND NOT EXISTS (
                SELECT 1 FROM settlement_cashmovementtracking t
                WHERE t.cash_movement_id = m.id AND t.state = 'confirmed') LIMIT 1"""),
                 90, "every cash movement confirmed on chain")
    stored = dict(stack.sql("SELECT id, client_order_id FROM orders_order WHERE id = ANY(%s)", [list(accepted)]))
    lost = {pk: s.body["client_order_id"] for pk, s in accepted.items() if stored.get(pk) != s.body["client_order_id"]}
    assert not lost, f"orders answered 202 but not stored: {lost}"
    # One statement, so one snapshot: beat goes on opening auctions for the orders still open, and one applied
    # between two reads would show fills in the orders that the earlier read of the results lacked.
    [(results, filled_rows)] = stack.sql("""
        SELECT (SELECT COALESCE(json_agg(result_document), '[]') FROM matching_auction WHERE state = 'applied'),
               (SELECT COALESCE(json_agg(json_build_array(id, filled_quantity::text)), '[]') FROM orders_order
                WHERE filled_quantity <> 0)""")
    booked: dict[int, Decimal] = defaultdict(Decimal)
    for result in results:
        for fill in (json.loads(result) if isinstance(result, str) else result)["fills"]:
            booked[int(fill["order"])] += Decimal(fill["quantity"])
    filled = {pk: Decimal(q) for pk, q in filled_rows}
    assert filled == {pk: q for pk, q in booked.items() if q}, "fills booked other than once"
    check = stack.manage("ccp_check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "fund locks on chain" in check.stdout
