"""The client package (client/, ``ccp_client``) trades through a served stack as bin/run starts it:
daphne, a Celery worker and beat against PostgreSQL, Redis and anvil (tests/faults' ``FaultStack``,
with the demo faucet on). Two fresh wallets get demo USDC from the faucet, deposit it on anvil, sign
in once the deposit monitor credits them, cross on a future and an auction fills them; fills,
positions and balances read back agree. The book stream keeps a local book equal to the REST book
through a message the test drops (a sequence gap: re-synced from REST) and a dropped connection (a
fresh snapshot); the private stream re-reads orders and fills after a reconnect; a cancel releases
the order value. The README's quickstart script runs against the same stack and prints its fill."""

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal as D
from pathlib import Path

import pytest
from ccp_client import ApiError, BookStream, Client, PrivateStream, TradeStream
from eth_account import Account

from tests.faults.conftest import FaultStack
from tests.processes import REPO, wait_for

pytestmark = pytest.mark.skipif(not os.environ.get("CCP_ANVIL"), reason="needs anvil: run bin/test")
DEPOSIT = D(5000)


@pytest.fixture(scope="module")
def stack():
    root = Path(f"/var/tmp/ccp-client-{os.getpid()}-{uuid.uuid4().hex[:6]}")  # the postgres user reaches it
    served = FaultStack(root)
    served.env.update({"CCP_DEMO_FAUCET": "1", "CCP_THROTTLE_FAUCET": ""})  # bin/run's demo mode
    try:
        served.start()
        yield served
    finally:
        served.stop()
        log = root / "processes.log"
        print(f"--- processes.log\n{log.read_text()[-6000:]}" if log.exists() else "")
        shutil.rmtree(root, ignore_errors=True)


def new_trader(stack: FaultStack) -> Client:
    trader = Client(stack.url, Account.create().key, rpc_url=stack.anvil.url())
    trader.faucet()
    trader.deposit(DEPOSIT, "USDC")
    trader.sign_in(wait_s=60)
    return trader


def future_of(trader: Client) -> dict:
    return max(trader.contracts(underlying="BTC/USDC", kind="future", state="listed"), key=lambda c: c["expiry_date"])


class LossyBookStream(BookStream):
    """Loses the first level change after ``lose`` is set, as the channel layer may."""

    lose = False

    def messages(self):
        for message in super().messages():
            if self.lose and message.get("type") == "book.level":
                self.lose = False
                continue
            yield message


class Collected:
    """A stream iterated in a thread of the test, its events kept."""

    def __init__(self, stream) -> None:
        self.stream, self.events = stream, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.stream:
            self.events.append(event)

    def of(self, kind: str) -> list[dict]:
        return [e for e in list(self.events) if e.get("type") == kind]

    def stop(self) -> None:
        self.stream.close()
        self.thread.join(10)


def test_two_fresh_wallets_trade_through_the_client(stack):
    alice, bob = new_trader(stack), new_trader(stack)
    for trader in (alice, bob):  # credited by the deposit monitor: sign-in needs it
        assert trader.balance("USDC")["fundlock"] == DEPOSIT
    future = future_of(alice)
    symbol, lot, tick = future["symbol"], future["lot_size"], future["tick_size"]
    mid = future["mark_price"] or (future["price_min"] + future["price_max"]) / 2  # no mark without an index
    price = (mid / tick).to_integral_value() * tick

    book = Collected(LossyBookStream(alice, symbol))
    private = Collected(PrivateStream(alice))
    trades = Collected(TradeStream(alice, symbol))
    wait_for(lambda: book.of("book.snapshot") and private.of("hello") and trades.of("trades.snapshot"), 20,
             "the streams to open")

    # A resting bid far below, cancelled: its order value is released.
    low = alice.place_order(symbol, "buy", price - 1000 * tick, lot, client_order_id="low-1")
    wait_for(lambda: alice.order(low["id"])["state"] == "accepted", 30, "the low bid to be accepted")
    assert alice.balance("USDC")["order_value"] > 0
    book.stream.lose = True  # the next level change (the cancel's) never reaches the local book
    assert alice.cancel_order(low["id"])["id"] == low["id"]
    wait_for(lambda: alice.order(low["id"])["state"] == "cancelled", 30, "the cancel")
    assert alice.balance("USDC")["order_value"] == 0

    private.stream.drop()  # the private stream reconnects and re-reads orders and fills
    wait_for(lambda: private.of("resync"), 30, "the private stream's re-sync after a reconnect")

    buy = alice.place_order(symbol, "buy", price, 2 * lot, client_order_id="buy-1")
    assert alice.place_order(symbol, "buy", price, 2 * lot, client_order_id="buy-1")["id"] == buy["id"]  # a retry
    sell = bob.place_order(symbol, "sell", price, lot)
    wait_for(lambda: alice.order(buy["id"])["state"] == "partially_filled", 60, "an auction to cross them")
    assert bob.order(sell["id"])["state"] == "filled"

    # Fills, orders and positions agree, on both sides.
    [bought] = list(alice.fills(contract=symbol))
    [sold] = list(bob.fills(order=sell["id"]))
    assert (bought["side"], bought["quantity"], bought["price"], bought["order_id"]) == ("buy", lot, price, buy["id"])
    assert (sold["side"], sold["quantity"], sold["price"]) == ("sell", lot, price)
    assert bought["trade_id"] == sold["trade_id"] and bought["venue_ref"].startswith("auction-")
    order = alice.order(buy["id"])
    assert (order["filled_quantity"], order["average_fill_price"]) == (lot, price)
    assert [f["trade_id"] for f in order["fills"]] == [bought["trade_id"]]
    positions = {trader: {p["contract"]: p["quantity"] for p in trader.positions()} for trader in (alice, bob)}
    assert positions == {alice: {symbol: lot}, bob: {symbol: -lot}}

    # The private stream told alice of her fill.
    wait_for(lambda: private.of("auction"), 30, "the auction event")
    fills = [e for a in private.of("auction") for e in a["events"] if e["type"] == "fill"]
    assert [(f["order_id"], f["quantity"], f["price"]) for f in fills] == [(buy["id"], lot, price)]

    # The public trade stream sent the trade, with the contract's next sequence.
    wait_for(lambda: trades.of("trade"), 30, "the public trade")
    [public] = trades.of("trade")
    assert (public["id"], public["price"], public["quantity"]) == (bought["trade_id"], price, lot)
    assert public["sequence"] == trades.of("trades.snapshot")[0]["sequence"] + 1

    # The book stream noticed the lost change, re-synced from REST, and follows the book.
    assert book.of("resync") and book.of("resync")[0]["reason"].startswith("gap")
    rest = alice.book(symbol)
    wait_for(lambda: book.stream.book.sequence.last == alice.book(symbol)["sequence"], 30, "the stream to catch up")
    rest = alice.book(symbol)
    assert book.stream.book.levels() == {k: rest[k] for k in ("sequence", "bids", "asks")}
    assert rest["bids"] == [{"price": price, "quantity": lot, "orders": 1}]

    # A dropped connection: a fresh snapshot, and the local book still equals the REST book.
    snapshots = len(book.of("book.snapshot"))
    book.stream.drop()
    wait_for(lambda: len(book.of("book.snapshot")) > snapshots, 30, "a new snapshot after the reconnect")
    assert book.stream.connections == 2
    assert book.stream.book.levels() == {k: rest[k] for k in ("sequence", "bids", "asks")}

    # Refusals carry the server's code and status.
    with pytest.raises(ApiError) as refused:
        alice.cancel_order(sell["id"])  # bob's order
    assert (refused.value.status, refused.value.code) == (404, "order_not_found")
    with pytest.raises(TypeError):
        alice.place_order(symbol, "buy", float(price), lot)  # money is never a float

    # What is left of alice's bid is cancelled: nothing stays held.
    assert alice.cancel_order(buy["id"])["id"] == buy["id"]
    wait_for(lambda: alice.order(buy["id"])["state"] == "cancelled", 30, "the cancel of the partly filled bid")
    assert alice.balance("USDC")["order_value"] == 0 and not alice.open_orders()

    for stream in (book, private, trades):
        stream.stop()


def test_the_quickstart_script_reaches_a_first_fill(stack):
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(REPO / "client" / "examples" / "quickstart.py")], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO / "client"), "CCP_URL": stack.url,
                              "CCP_RPC_URL": stack.anvil.url()},
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " filled at " in run.stdout and "fill: buy " in run.stdout, run.stdout
    print(f"quickstart: {time.monotonic() - started:.0f} s\n{run.stdout}")


def test_the_simulator_keeps_a_bounded_book_near_fair_value(stack):
    """The simulator (on the client) with more rounds than a trader may keep orders: each trader ends
    with at most MAX_RESTING open orders, and its requotes cancelled the rest."""
    from ccp.system.management.commands.ccp_simulate import MAX_RESTING

    rounds = MAX_RESTING + 10
    stack.manage("ccp_simulate", "--url", stack.url, "--traders", "2", "--rounds", str(rounds), "--interval", "0.1")
    traders = [Account.from_key(hashlib.sha256(f"ccp-simulated-trader-{n}".encode()).digest()).address.lower()
               for n in range(2)]
    counts = stack.sql("""
        SELECT c.address, COUNT(*) FILTER (WHERE o.state IN ('received', 'accepted', 'partially_filled')),
               COUNT(*) FILTER (WHERE o.state = 'cancelled'), COUNT(*)
        FROM orders_order o JOIN accounts_client c ON c.id = o.client_id
        WHERE c.address = ANY(%s) GROUP BY c.address""", [traders])
    assert len(counts) == 2, counts
    for address, open_orders, cancelled, sent in counts:
        assert open_orders <= MAX_RESTING and sent == rounds, (address, open_orders, cancelled, sent)
        assert cancelled > 0
