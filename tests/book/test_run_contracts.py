"""A matcher run over several contracts of its queue (``ccp.book.services.books_match``): one transaction for
all, each contract matched as a run of it alone would match it, the collateral its clients' orders take
counted across the contracts."""

from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.book.services import book_match, books_match, order_modify
from ccp.contracts.models import Contract, TradingMode
from ccp.orders.models import Order
from ccp.orders.rules import order_held
from ccp.orders.services import OrderRequest, order_submit
from ccp.risk.collateral import available
from ccp.system.invariants import invariants_check
from tests.book.test_matcher_kill import continuous, outcome, scenario
from tests.conftest import NOW
from tests.factories import FundLockFactory
from tests.ledger import assert_books_balance
from tests.orders.test_lock_order import lock_order_kept
from tests.sends import sends_recorded

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The private stream messages sent, by client id, in order (sent as they are, to the real layer too)."""
    by_client: dict[int, list[dict]] = {}

    def record(messages):
        for group, message in messages:
            if group.startswith("client.") and message["type"] == "stream.event":
                by_client.setdefault(int(group.partition(".")[2]), []).append(message["event"])

    sends_recorded(monkeypatch, record)
    return by_client


def events(sent, traders, contracts):
    """Each trader's order, fill and position events, per contract (by its place in ``contracts``), in order,
    orders named by their client order ids; and each trader's last balance."""
    names = {symbol: n for n, symbol in enumerate(c.symbol for c in contracts)}
    coid = dict(Order.objects.filter(contract__in=contracts).values_list("id", "client_order_id"))
    name = {pk: coid[parent] + "/" + leg if parent else coid[pk] for pk, parent, leg in
            Order.objects.filter(contract__in=contracts).values_list("id", "parent_id", "leg")}
    out = []
    for trader in traders:
        mine: dict[int, list] = {n: [] for n in range(len(contracts))}
        balance = None
        for message in sent.get(trader.pk, []):
            for event in message.get("events", [message]):
                kind = event["type"]
                if kind == "balance":
                    balance = {k: v for k, v in event["balance"].items() if k != "updated_at"}
                    continue
                body = dict(event[kind] if kind in ("order", "position") else event)
                symbol = body.pop("contract")
                for key in ("id", "order_id", "parent"):
                    if body.get(key) is not None:
                        body[key] = name[body[key]]
                for key in ("trades", "venue_ref", "sequence", "client_order_id"):  # a leg's names its entry's id
                    body.pop(key, None)
                mine[names[symbol]].append((kind, sorted(body.items(), key=str)))
        out.append((mine, balance))
    return out


def test_two_contracts_in_one_run_book_what_two_runs_do(sent, django_capture_on_commit_callbacks):
    # given two contracts whose orders alternate, their traders shared, matched by runs over both
    a, b = continuous(0, 7)
    traders = scenario(a, b)
    with django_capture_on_commit_callbacks(execute=True):
        runs = 0
        while True:
            with lock_order_kept("books_match"):  # ccp.locks' order over the run's contracts
                taken = books_match(contract_id=a.pk, now=NOW, limit=6, queues=1)
            if not taken:
                break
            runs += 1
            assert set(taken) == {a.pk, b.pk} or sum(taken.values()) < 6, "a full run takes both contracts"
    assert runs > 10
    merged = [outcome(a, traders), outcome(b, traders)], events(sent, traders, [a, b])
    # when two more such contracts are matched each alone, one after the other, in batches of the same orders
    sent.clear()
    c, d = continuous(14, 21, pair=a.pair)
    alone_traders = scenario(c, d)
    with django_capture_on_commit_callbacks(execute=True):
        for contract in (c, d):
            while book_match(contract_id=contract.pk, now=NOW, limit=3):  # the same orders in each batch
                pass
    alone = [outcome(c, alone_traders), outcome(d, alone_traders)], events(sent, alone_traders, [c, d])
    # then the trades, order states, balances, positions and events are the same
    assert alone[0][0][0] and alone[0][1][0], "the scenario trades on both"
    assert merged[0] == alone[0]
    assert merged[1] == alone[1]
    assert not Order.objects.filter(state="received").exists()
    assert_books_balance()
    assert invariants_check().ok


def test_a_clients_orders_on_two_contracts_cannot_together_exceed_its_collateral():
    # given a client whose collateral covers one of two orders, each on its own contract of one queue
    a, b = continuous(0, 7)
    cost = order_held(a.terms, "buy", D("100"), D("10"), None)
    client = FundLockFactory(currency=a.collateral, fundlock=cost * D("1.5")).client
    first, second = (Order.objects.get(pk=order_pk) for order_pk in (
        _buy(client, a, "first"), _buy(client, b, "second")))
    # when one run matches both
    assert books_match(contract_id=a.pk, now=NOW, queues=1) == {a.pk: 1, b.pk: 1}
    # then the first is accepted, the second refused: together they would take more than there is
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.order_value) == ("accepted", cost)
    assert (second.state, second.reject_reason) == ("rejected", "insufficient_collateral")
    fund_lock = FundLock.objects.get(client=client, currency=a.collateral)
    assert fund_lock.order_value == cost and available(fund_lock) == cost / 2
    assert invariants_check().ok


def _buy(client, contract, coid) -> int:
    return _order(client, contract, "buy", "100", coid)


def _order(client, contract, side, price, coid) -> int:
    order, _ = order_submit(client=client, now=NOW, validate_later=False, request=OrderRequest(
        client_order_id=coid, contract=contract, side=side, kind="limit", price=D(price), quantity=D("10")))
    return order.pk


def test_a_run_takes_the_modifications_of_its_contracts_in_arrival_order():
    # given a resting order on each of two contracts, then a taker on the second, then both makers moved
    a, b = continuous(0, 7)
    maker = FundLockFactory(currency=a.collateral, fundlock=D("100000")).client
    taker = FundLockFactory(currency=a.collateral, fundlock=D("100000")).client
    resting = [Order.objects.get(pk=_order(maker, contract, "sell", "102", f"m{n}"))
               for n, contract in enumerate((a, b))]
    books_match(contract_id=a.pk, now=NOW, queues=1)
    buy = Order.objects.get(pk=_order(taker, b, "buy", "100", "t"))
    for order in resting:
        order_modify(client=maker, order_id=order.pk, price=D("100"), quantity=None, now=NOW)
    # when one run matches them
    assert books_match(contract_id=a.pk, now=NOW, queues=1) == {a.pk: 1, b.pk: 2}
    # then the taker on b, first in, rested; the maker on b, moved to its price, traded with it
    for order in (*resting, buy):
        order.refresh_from_db()
    assert [(o.price, o.state, o.modify_requested_at) for o in resting] == [
        (D("100"), "accepted", None), (D("100"), "filled", None)]
    assert (buy.state, buy.filled_quantity) == ("filled", D("10"))
    assert invariants_check().ok
    assert_books_balance()


def test_a_run_refuses_the_modifications_of_a_contract_no_longer_continuous_and_matches_the_others():
    # given a modification queued on a contract that then moved to auctions, and an order on another
    a, b = continuous(0, 7)
    maker = FundLockFactory(currency=a.collateral, fundlock=D("100000")).client
    resting = Order.objects.get(pk=_order(maker, a, "sell", "102", "m"))
    book_match(contract_id=a.pk, now=NOW)
    order_modify(client=maker, order_id=resting.pk, price=D("101"), quantity=None, now=NOW)
    Contract.objects.filter(pk=a.pk).update(trading_mode=TradingMode.AUCTION)
    other = Order.objects.get(pk=_order(maker, b, "buy", "90", "o"))
    # when the first contract's task runs
    with lock_order_kept("books_match"):
        assert books_match(contract_id=a.pk, now=NOW, queues=1) == {b.pk: 1}
    # then the modification is refused, the order unchanged, and the other contract's order matched
    resting.refresh_from_db()
    other.refresh_from_db()
    assert (resting.price, resting.modify_requested_at, resting.modify_reject_reason) == (
        D("102"), None, "modify_not_in_auction")
    assert other.state == "accepted"
