"""The continuous venue's matcher in real processes against the test database: killed with SIGKILL at
several points of a batch and started again, it books the same trades and leaves the same balances as a
run that was never killed; two matchers pointed at one contract never both match it.

Each test builds one scenario twice, on two continuous contracts with their own traders: contract A's
matcher is disturbed, contract B's runs undisturbed; both must end the same (trades by the orders'
client ids, each trader's fund lock and position)."""

import random
import subprocess
import sys
import threading
from decimal import Decimal as D

import pytest
from django.db import connection, transaction

from ccp.accounts.models import FundLock
from ccp.clearing.models import Trade
from ccp.contracts.models import TradingMode
from ccp.locks import contract_lock
from ccp.orders.models import Order
from ccp.orders.services import OrderRequest, order_submit
from ccp.risk.models import Position
from ccp.system.invariants import invariants_check
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, PairFactory
from tests.ledger import assert_books_balance
from tests.processes import REPO, process_env

pytestmark = pytest.mark.django_db(transaction=True)

TRADERS = 6
MATCH = ("import django; django.setup(); from ccp.book.tasks import book_match_task; "
         "book_match_task.run({contract_id})")


def scenario(*contracts, seed=7, orders=40):
    """The same traders and orders on each of ``contracts``: resting and crossing limits (some with a
    take-profit and a stop-loss), market and IOC orders, stop orders, post-only, fill-or-kill and self-trade
    prevention, left 'received' for the matcher. Several contracts share the traders (and their collateral),
    their orders entered in turn (arrival order alternates between them)."""
    rng = random.Random(seed)
    currency = contracts[0].collateral
    traders = [FundLockFactory(currency=currency, fundlock=D("5000") * len(contracts)).client for _ in range(TRADERS)]
    for n in range(orders):
        for k, contract in enumerate(contracts):
            side = rng.choice(["buy", "sell"])
            kind, tif = rng.choice([("limit", "gtc")] * 5 + [("limit", "ioc"), ("limit", "post_only"),
                                                             ("limit", "fok"), ("market", "ioc")])
            price = D(100) + D(rng.randint(-6, 6)) / 2
            if kind == "market":
                price += D(4) if side == "buy" else D(-4)
            terms = {}
            if kind == "limit" and tif == "gtc" and rng.random() < 0.3:  # a take-profit and a stop-loss
                away = D(2) if side == "buy" else D(-2)
                terms["attached"] = {"tp": {"trigger_price": str(price + away), "price": str(price - 2 * away),
                                            "kind": "market", "trigger_source": "last"},
                                     "sl": {"trigger_price": str(price - away), "price": str(price - 2 * away),
                                            "kind": "limit", "trigger_source": "last"}}
            elif kind == "market" and rng.random() < 0.5:  # a stop order instead
                terms = {"trigger": "stop", "trigger_price": D(100), "trigger_source": "last"}
            order_submit(client=traders[rng.randrange(TRADERS)], now=NOW, validate_later=False, request=OrderRequest(
                client_order_id=f"o{n}" + (f"-{k}" if k else ""), contract=contract, side=side, kind=kind,
                price=price, quantity=D(rng.randint(1, 4)), time_in_force=tif,
                self_trade_prevention=rng.choice(["cancel_incoming", "cancel_resting", "cancel_both"]), **terms))
    return traders


def continuous(*days, pair=None):
    pair = pair or PairFactory()
    return [ContractFactory(pair=pair, kind="future", strike_px=None, floor_px=D("50"), cap_px=D("150"),
                            tick_size=D("0.5"), lot_size=D("1"), trading_mode=TradingMode.CONTINUOUS,
                            expiry_date=_expiry(n)) for n in days]


def two_contracts():
    a, b = continuous(0, 7)
    return (a, scenario(a)), (b, scenario(b))


def _expiry(days):
    from datetime import timedelta

    from tests.factories import EXPIRY
    return EXPIRY + timedelta(days=days)


def outcome(contract, traders):
    """What the matcher left, by the orders' client ids and the traders' places in the scenario."""
    index = {client.pk: n for n, client in enumerate(traders)}
    coid = dict(Order.objects.filter(contract=contract).values_list("id", "client_order_id"))
    name = {pk: coid[parent] + "/" + leg if parent else coid[pk] for pk, parent, leg in
            Order.objects.filter(contract=contract).values_list("id", "parent_id", "leg")}
    trades = [(price, quantity, name[buy], name[sell], aggressor) for price, quantity, buy, sell, aggressor in
              Trade.objects.filter(contract=contract).order_by("sequence").values_list(
                  "price", "quantity", "buy_order_id", "sell_order_id", "aggressor_side")]
    orders = sorted((coid[parent] + "/" + leg if parent else client_order_id, state, filled, value, reason)
                    for client_order_id, parent, leg, state, filled, value, reason in
                    Order.objects.filter(contract=contract).values_list(
                        "client_order_id", "parent_id", "leg", "state", "filled_quantity", "order_value",
                        "reject_reason"))
    funds = sorted((index[f.client_id], f.settle_value, f.order_value, f.lockup_value)
                   for f in FundLock.objects.filter(client_id__in=index))
    positions = sorted((index[c], q) for c, q in Position.objects.filter(contract=contract)
                       .values_list("client_id", "quantity"))
    return trades, orders, funds, positions


def run_matcher(contract, failpoint="", batch=4):
    env = {**process_env(), "CCP_BOOK_BATCH": str(batch)}
    if failpoint:
        env["CCP_BOOK_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-c", MATCH.format(contract_id=contract.pk)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("failpoint", ["matched:1", "written:1", "matched:3", "written:3", "committed:2"])
def test_a_matcher_killed_mid_batch_and_restarted_books_what_an_undisturbed_one_does(failpoint):
    (a, a_traders), (b, b_traders) = two_contracts()
    killed = run_matcher(a, failpoint)
    assert killed.returncode == -9, killed.stderr[-2000:]
    batches_done = int(failpoint.partition(":")[2]) - (0 if failpoint.startswith("committed") else 1)
    assert Order.objects.filter(contract=a, parent=None).exclude(state="received").count() == 4 * batches_done
    assert run_matcher(a).returncode == 0
    assert run_matcher(b).returncode == 0
    disturbed, undisturbed = outcome(a, a_traders), outcome(b, b_traders)
    assert undisturbed[0], "the scenario trades"
    assert any("/" in order[0] for order in undisturbed[1]), "legs were armed"
    assert disturbed == undisturbed
    assert not Order.objects.filter(state="received").exists()
    assert_books_balance()
    assert invariants_check().ok


def test_two_matchers_on_one_contract_never_both_match_it():
    (a, a_traders), (b, b_traders) = two_contracts()
    # While a transaction holds the contract's row, a matcher waits: it has matched nothing.
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                contract_lock(a.pk)
                held.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    env = {**process_env(), "CCP_BOOK_BATCH": "3"}
    matchers = [subprocess.Popen([sys.executable, "-c", MATCH.format(contract_id=a.pk)], cwd=REPO, env=env,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for matcher in matchers:
            with pytest.raises(subprocess.TimeoutExpired):
                matcher.wait(timeout=1)
        assert not Order.objects.filter(contract=a).exclude(state="received").exists()
    finally:
        release.set()
        holder.join()
    assert [m.wait(timeout=120) for m in matchers] == [0, 0]
    assert run_matcher(b, batch=3).returncode == 0
    assert outcome(a, a_traders) == outcome(b, b_traders)
    assert_books_balance()
    assert invariants_check().ok


@pytest.mark.parametrize("failpoint", ["matched:2", "written:2", "committed:3"])
def test_a_run_over_two_contracts_killed_and_restarted_books_what_an_undisturbed_one_does(failpoint):
    """One run takes both contracts of its queue (their orders alternate, their traders share collateral):
    killed mid-run and started again, it leaves what an undisturbed run over two other such contracts does."""
    a, b = continuous(0, 7)
    traders = scenario(a, b)
    killed = run_matcher(a, failpoint)
    assert killed.returncode == -9, killed.stderr[-2000:]
    runs_done = int(failpoint.partition(":")[2]) - (0 if failpoint.startswith("committed") else 1)
    taken = Order.objects.filter(contract__in=[a, b], parent=None).exclude(state="received")
    assert taken.count() == 4 * runs_done
    assert runs_done == 0 or set(taken.values_list("contract_id", flat=True)) == {a.pk, b.pk}, "runs take both"
    assert run_matcher(a).returncode == 0
    assert not Order.objects.filter(state="received").exists()
    c, d = continuous(14, 21, pair=a.pair)  # after: the run on a never saw them
    undisturbed_traders = scenario(c, d)
    assert run_matcher(c).returncode == 0
    disturbed = [outcome(a, traders), outcome(b, traders)]
    undisturbed = [outcome(c, undisturbed_traders), outcome(d, undisturbed_traders)]
    assert undisturbed[0][0] and undisturbed[1][0], "the scenario trades on both"
    assert disturbed == undisturbed
    assert not Order.objects.filter(state="received").exists()
    assert_books_balance()
    assert invariants_check().ok
