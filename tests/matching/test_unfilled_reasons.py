"""Why not filled: the apply stores the engine's reason (the result's ``reasons``) on each order it leaves
open or partly filled; it shows in the order's API representation and its private-stream order event.
The engine is being taught to give reasons: here the solved result is given them, as it will carry."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from channels.db import database_sync_to_async as db

from ccp.matching.models import Auction
from ccp.matching.services import auction_apply
from ccp.orders.models import Order
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.matching.netting import auction_run, place

AT = NOW + timedelta(seconds=10)


def _market():
    """Alice sells 1 at 2000, Bob buys 0.3 at 2100 (Alice fills 0.3), Carol bids 1000 (below)."""
    contract = ContractFactory()
    alice, bob, carol = (FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client
                         for _ in range(3))
    orders = {"alice": place(alice, contract, "sell", "2000", "1"), "bob": place(bob, contract, "buy", "2100", "0.3"),
              "carol": place(carol, contract, "buy", "1000", "1")}
    for order in orders.values():
        assert order.client  # read here, not from the event loop
    return contract, orders


def _solved_with(contract, reasons) -> Auction:
    """The pair's auction solved, its result's reasons replaced by ``reasons`` (order id -> code; None: a
    result written before reasons existed), in the engine's form (code -> order ids)."""
    auction = auction_run(contract.pair, AT, apply=False)
    document = {k: v for k, v in auction.result_document.items() if k != "reasons"}
    if reasons is not None:
        document["reasons"] = {code: sorted(pk for pk, c in reasons.items() if c == code)
                               for code in sorted(set(reasons.values()))}
    auction.result_document = document
    auction.save(update_fields=["result_document"])
    return auction


@pytest.mark.django_db
def test_the_engine_s_own_reasons_reach_the_orders():
    """As solved: Alice's sell is partly filled (Bob wanted 0.3 of it), Carol's bid lies below the price."""
    contract, orders = _market()
    auction = auction_run(contract.pair, AT, apply=False)
    assert auction.result_document["reasons"] == {"limit": [str(orders["carol"].pk)],
                                                  "priority": [str(orders["alice"].pk)]}
    auction_apply(auction_id=auction.pk, now=AT)
    assert _reasons(orders) == {"alice": ("partially_filled", "priority"), "bob": ("filled", ""),
                                "carol": ("accepted", "limit")}


def _reasons(orders) -> dict[str, tuple[str, str]]:
    return {name: tuple(Order.objects.filter(pk=o.pk).values_list("state", "unfilled_reason").get())
            for name, o in orders.items()}


@pytest.mark.django_db
def test_the_apply_stores_each_open_orders_reason_and_the_api_shows_it(api_as):
    contract, orders = _market()
    auction = _solved_with(contract, {str(orders["alice"].pk): "priority", str(orders["carol"].pk): "limit"})

    for _ in range(2):
        auction_apply(auction_id=auction.pk, now=AT)

    assert _reasons(orders) == {"alice": ("partially_filled", "priority"), "bob": ("filled", ""),
                                "carol": ("accepted", "limit")}
    shown = api_as(orders["carol"].client).get(f"/api/v1/orders/{orders['carol'].pk}").json()
    assert (shown["state"], shown["unfilled_reason"]) == ("accepted", "limit")
    listed = api_as(orders["alice"].client).get("/api/v1/orders").json()["results"]
    assert [o["unfilled_reason"] for o in listed] == ["priority"]


@pytest.mark.django_db
def test_without_reasons_in_the_result_nothing_is_stored():
    contract, orders = _market()
    auction = _solved_with(contract, None)
    auction_apply(auction_id=auction.pk, now=AT)
    assert _reasons(orders) == {"alice": ("partially_filled", ""), "bob": ("filled", ""), "carol": ("accepted", "")}


@pytest.mark.django_db
def test_an_order_cancelled_by_the_apply_keeps_its_cancel_reason(now):
    from ccp.orders.services import order_cancel
    contract, orders = _market()
    auction = _solved_with(contract, {str(orders["carol"].pk): "limit"})
    order_cancel(client=orders["carol"].client, order_id=orders["carol"].pk, now=AT)  # held: a cancel request
    auction_apply(auction_id=auction.pk, now=AT)
    carol = Order.objects.get(pk=orders["carol"].pk)
    assert (carol.state, carol.unfilled_reason) == ("cancelled", "")
    assert carol.history.last().reason == "cancel_requested"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_private_stream_carries_the_reason():
    from tests.streams.conftest import api_token_create, receive_until, ws_connect

    contract, orders = await db(_market)()
    tokens = {name: await db(api_token_create)(orders[name].client) for name in ("alice", "carol")}
    auction = await db(_solved_with)(contract, {str(orders["alice"].pk): "collateral",
                                                str(orders["carol"].pk): "limit"})
    async with ws_connect("/ws/v1/private", [(b"authorization", f"Bearer {tokens['alice']}".encode())]) as alice, \
            ws_connect("/ws/v1/private", [(b"authorization", f"Bearer {tokens['carol']}".encode())]) as carol:
        await alice.receive_json_from(timeout=5)  # hello
        await carol.receive_json_from(timeout=5)
        await db(auction_apply)(auction_id=auction.pk, now=AT)
        mine = await receive_until(alice, lambda m: m["type"] == "auction")
        (event,) = [e for e in mine[-1]["events"] if e["type"] == "order"]
        assert (event["order"]["state"], event["order"]["unfilled_reason"]) == ("partially_filled", "collateral")
        # Carol's order the apply leaves alone: its new reason in one unfilled event per client
        theirs = await receive_until(carol, lambda m: m["type"] == "unfilled")
        assert (theirs[-1]["auction"], theirs[-1]["orders"]) == (
            auction.ref, [{"id": orders["carol"].pk, "unfilled_reason": "limit"}])


@pytest.mark.django_db(transaction=True)
def test_the_reasons_written_beside_the_apply_commit_with_it_and_roll_back_with_it(monkeypatch):
    """The orders the apply leaves alone get their reasons through a second connection beside it
    (``ccp.db.Beside``): stored when the apply commits, not at all when it fails."""
    import ccp.matching.services as services

    contract, orders = _market()
    auction = _solved_with(contract, {str(orders["alice"].pk): "priority", str(orders["carol"].pk): "limit"})

    def broken(*args, **kwargs):
        raise RuntimeError("the apply fails after the reasons' statement")

    monkeypatch.setattr(services, "_trade_reports", broken)
    with pytest.raises(RuntimeError):
        auction_apply(auction_id=auction.pk, now=AT)
    assert _reasons(orders) == {"alice": ("accepted", ""), "bob": ("accepted", ""), "carol": ("accepted", "")}
    assert Auction.objects.get(pk=auction.pk).state == "solved"

    monkeypatch.undo()
    auction_apply(auction_id=auction.pk, now=AT)
    assert _reasons(orders) == {"alice": ("partially_filled", "priority"), "bob": ("filled", ""),
                                "carol": ("accepted", "limit")}


@pytest.mark.django_db(transaction=True)
def test_the_reasons_beside_never_wait_where_postgresql_cannot_see_a_deadlock():
    """Another transaction holds an order row the reasons' statement needs and then waits for a contract
    row the apply holds. Beside the apply, the statement would wait for it while the apply waits for the
    statement: a cycle PostgreSQL cannot see (the apply waits in Python), so nothing would ever end. The
    statement gives up its wait and runs in the apply's own transaction: PostgreSQL then sees the
    deadlock and breaks it; either the apply or the other transaction fails, and a retry applies."""
    import threading

    import psycopg
    from django.db import OperationalError, connection

    from tests.processes import wait_for
    from tests.settlement.test_races import lock_waiters

    contract, orders = _market()
    auction = _solved_with(contract, {str(orders["alice"].pk): "priority", str(orders["carol"].pk): "limit"})
    other = psycopg.connect(**connection.get_connection_params())
    other.execute("SET lock_timeout = '20s'")  # were the cycle unseen, this wait would end it (and the test)
    other.execute("SELECT id FROM orders_order WHERE id = %s FOR NO KEY UPDATE", [orders["carol"].pk])
    outcome = []

    def apply():
        try:
            auction_apply(auction_id=auction.pk, now=AT)
            outcome.append("applied")
        except OperationalError as exc:
            outcome.append(type(exc.__cause__).__name__)
        finally:
            connection.close()

    thread = threading.Thread(target=apply)
    thread.start()
    try:
        wait_for(lambda: lock_waiters() >= 1, 20, "the reasons' statement waiting for Carol's order")
        try:  # the contract row the apply holds
            other.execute("SELECT id FROM contracts_contract WHERE id = %s FOR NO KEY UPDATE", [contract.pk])
            victim = "apply"
        except psycopg.errors.DeadlockDetected:
            victim = "other"
        other.rollback()
    finally:
        thread.join(timeout=60)
        other.close()
    assert not thread.is_alive(), "the apply never ended"
    assert (victim, outcome) in [("other", ["applied"]), ("apply", ["DeadlockDetected"])]
    if outcome != ["applied"]:
        auction_apply(auction_id=auction.pk, now=AT)
    assert _reasons(orders)["carol"] == ("accepted", "limit")
