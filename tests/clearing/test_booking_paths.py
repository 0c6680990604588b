"""``trades_clear``'s path for a venue that changes more in the same transaction (the continuous matcher:
its own order value in the same fund lock update, its messages and levels published by itself) writes the
same rows as the plain path (the auctions') followed by that order value change: one buy order's trades
move several clients' fund locks and positions, another client's order value moves only by the venue."""

from decimal import Decimal as D

import pytest
from django.db import transaction

from ccp.accounts.models import FundLock
from ccp.accounts.services import fund_locks_adjust
from ccp.clearing.booking import trades_clear
from ccp.clearing.models import Trade, Venue
from ccp.clearing.services import Execution
from ccp.contracts.models import Contract
from ccp.locks import contracts_lock, fund_locks_lock, orders_lock
from ccp.orders.models import Order, OrderStateHistory
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory
from tests.matching.test_auction_flow import place

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


def rows():
    """Every row a booking writes, without the ids a sequence hands out (not rolled back)."""
    return (list(Trade.objects.order_by("sequence").values_list("price", "quantity", "buy_order_id", "sell_order_id",
                                                                "sequence", "venue", "venue_ref")),
            list(Order.objects.order_by("id").values_list("id", "state", "filled_quantity", "average_fill_price",
                                                          "order_value", "last_fill_at")),
            sorted(OrderStateHistory.objects.values_list("order_id", "from_state", "to_state", "reason",
                                                         "filled_quantity")),
            sorted(Position.objects.values_list("client_id", "contract_id", "quantity", "cost", "entry_price",
                                                "realised_pnl")),
            sorted(CashMovement.objects.values_list("client_id", "contract_id", "amount", "position_delta", "origin",
                                                    "origin_ref")),
            list(FundLock.objects.order_by("id").values_list("id", "fundlock", "settle_value", "order_value",
                                                             "lockup_value")),
            sorted(Lockup.objects.values_list("client_id", "amount")))


def book(executions, cancels, held, *, merged: bool, lock_all: bool = False):
    """Book in a transaction that is rolled back; returns the rows it wrote and what trades_clear returned.
    ``lock_all``: the caller locks the fund locks of every order's client (as an auction's apply does), not only
    those of ``held``."""
    out = {}
    try:
        with transaction.atomic():
            ids = {e.buy_order_id for e in executions} | {e.sell_order_id for e in executions} | set(cancels)
            contracts = contracts_lock(Contract.objects.filter(pk__in=Order.objects.filter(pk__in=ids)
                                                               .values("contract_id")))
            orders = {o.pk: o for o in orders_lock(Order.objects.filter(pk__in=ids))}
            for order in orders.values():
                order.contract = contracts[order.contract_id]
            kwargs = {"venue": Venue.BOOK, "venue_ref": "book-test", "executions": executions, "orders": orders,
                      "contracts": contracts, "cancels": cancels, "now": NOW, "envelope": {"type": "book"}}
            if merged:
                keys = set(held) | ({(o.client_id, o.contract.collateral_id) for o in orders.values()} if lock_all
                                    else set())
                locked = fund_locks_lock(keys=keys)
                cleared = trades_clear(**kwargs, order_value=held, locked=locked, publish=False)
                others = cleared.others
            else:
                cleared = trades_clear(**kwargs)
                adjusted = fund_locks_adjust(settle_value={}, order_value=held, lockup_value={}, now=NOW)
                others = {key: f for key, f in adjusted.items() if key not in cleared.fund_locks}
            out.update(rows=rows(), filled=cleared.filled, own=set(cleared.fund_locks), others=set(others),
                       messages=cleared.messages, levels=cleared.levels)
            raise Rollback
    except Rollback:
        pass
    return out


def test_the_matcher_path_writes_the_rows_of_the_plain_path():
    contract = ContractFactory()
    alice, bob, carol, dave = (FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client
                               for _ in range(4))
    buy = place(alice, contract, "buy", "2100", "1")
    sells = [place(bob, contract, "sell", "2000", "0.4"), place(carol, contract, "sell", "2050", "0.5")]
    resting = place(dave, contract, "buy", "1900", "0.2")
    executions = [Execution(contract.pk, D("2000"), D("0.4"), buy.pk, alice.pk, sells[0].pk, bob.pk, "buy"),
                  Execution(contract.pk, D("2050"), D("0.3"), buy.pk, alice.pk, sells[1].pk, carol.pk, "buy")]
    currency = contract.collateral_id
    held = {(alice.pk, currency): D("3"), (dave.pk, currency): D("7")}
    plain = book(executions, {buy.pk: "ioc_leftover"}, held, merged=False)
    merged = book(executions, {buy.pk: "ioc_leftover"}, held, merged=True)
    assert merged["rows"] == plain["rows"]
    assert merged["filled"] == plain["filled"] == {buy.pk: D("0.7"), sells[0].pk: D("0.4"), sells[1].pk: D("0.3")}
    assert merged["own"] == plain["own"] == {(c.pk, currency) for c in (alice, bob, carol)}
    assert merged["others"] == plain["others"] == {(dave.pk, currency)}
    # Published by the caller: one message per client with fills, the levels the fills and the cancel changed.
    assert [client_id for client_id, _ in merged["messages"]] == sorted(c.pk for c in (alice, bob, carol))
    assert merged["levels"] == {contract.pk: {("buy", D("2100")), ("sell", D("2000")), ("sell", D("2050"))}}
    assert plain["messages"] == [] and plain["levels"] == {}
    assert resting.pk not in merged["filled"]
