"""The matcher's hot row locks in plain SQL (``ccp.locks``: contract_lock, orders_lock, fund_locks_lock) give what
the ORM gave: the same rows, in the same order, as model instances with the same field values (database
converters applied: an order's JSON ``attached`` decoded), the related rows read with them, and each lock taken
on its own table only (``FOR NO KEY UPDATE OF`` the table the lock order names)."""

import threading
import time
from decimal import Decimal as D

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext

from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract
from ccp.locks import _BOOK_LOCK, book_contracts_lock, contract_lock, fund_locks_lock, orders_lock
from ccp.orders.models import Order
from tests.factories import (
    ClientFactory,
    ContractFactory,
    CurrencyFactory,
    FundLockFactory,
    PairFactory,
    ReceivedOrderFactory,
)
from tests.orders.test_lock_order import locked_kinds

pytestmark = pytest.mark.django_db


def fields(instance) -> dict:
    return {k: v for k, v in vars(instance).items() if k != "_state"}


def only_lock(queries, kind: str) -> None:
    """The captured statements lock rows of ``kind`` alone."""
    locks = [locked_kinds(q["sql"]) for q in queries.captured_queries]
    assert [k for k in locks if k] == [{kind}], [q["sql"] for q in queries.captured_queries]


def test_contract_lock_reads_the_contract_its_pair_and_currencies_and_locks_the_contract_only():
    contract = ContractFactory(strike_px=D("101234.5"))
    expected = Contract.objects.select_related("pair__base", "pair__quote").get(pk=contract.pk)
    with CaptureQueriesContext(connection) as queries:
        locked = contract_lock(contract.pk)
        # The pair and both currencies came with it: reading them sends nothing.
        symbols = (locked.pair.base.symbol, locked.pair.quote.symbol, locked.pair.quote.decimals)
    only_lock(queries, "contracts_contract")
    assert len(queries.captured_queries) == 1
    assert fields(locked) == fields(expected)
    assert fields(locked.pair) == fields(expected.pair)
    assert fields(locked.pair.base) == fields(expected.pair.base)
    assert fields(locked.pair.quote) == fields(expected.pair.quote)
    assert symbols == ("BTC", "USDC", 6)
    assert not locked._state.adding and locked._state.db == "default"
    assert locked.get_deferred_fields() == set()


def test_contract_lock_of_no_contract_raises_does_not_exist():
    with pytest.raises(Contract.DoesNotExist):
        contract_lock(987654321)


def test_orders_lock_gives_the_querysets_rows_by_id_as_the_orm_did():
    contract, other = ContractFactory(), ContractFactory(strike_px=D("90000"))
    attached = {"take_profit": {"price": "120"}, "stop_loss": {"price": "80"}}
    made = [ReceivedOrderFactory(contract=contract, attached=attached if i == 1 else None) for i in range(4)]
    ReceivedOrderFactory(contract=other)
    made[2].state = "cancelled"
    made[2].save()
    wanted = Order.objects.filter(contract=contract, state__in=["received", "open"])
    with CaptureQueriesContext(connection) as queries:
        locked = orders_lock(wanted)
    only_lock(queries, "orders_order")
    expected = list(Order.objects.filter(pk__in=[made[0].pk, made[1].pk, made[3].pk]).order_by("id"))
    assert [fields(o) for o in locked] == [fields(o) for o in expected]
    assert locked[1].attached == attached  # the JSON decoded, as the ORM decodes it
    (alone,) = orders_lock(Order.objects.filter(pk=made[1].pk))
    assert alone.attached == attached and fields(alone) == fields(expected[1])


def test_orders_lock_by_a_raw_subquery_as_the_matcher_calls_it_and_empty_and_joined_filters():
    contract = ContractFactory()
    made = [ReceivedOrderFactory(contract=contract) for _ in range(3)]
    work = RawSQL("SELECT id FROM orders_order WHERE contract_id = %s ORDER BY id DESC LIMIT %s", [contract.pk, 2])
    assert [o.pk for o in orders_lock(Order.objects.filter(pk__in=work))] == [made[1].pk, made[2].pk]
    assert orders_lock(Order.objects.none()) == []
    assert orders_lock(Order.objects.filter(pk__in=[])) == []
    assert [o.pk for o in orders_lock(Order.objects.all())] == [o.pk for o in made]
    # A filter through a join (and select_related) keeps the ORM's own statement: the same rows.
    joined = orders_lock(Order.objects.filter(contract__symbol=contract.symbol).select_related("contract"))
    assert [o.pk for o in joined] == [o.pk for o in made]


def test_fund_locks_lock_by_keys_and_by_clients_as_the_orm_did():
    usdc, eth = CurrencyFactory(symbol="USDC", decimals=6), CurrencyFactory(symbol="ETH")
    alice, bob, carol = ClientFactory(), ClientFactory(), ClientFactory()
    rows = {(c.pk, cur.pk): FundLockFactory(client=c, currency=cur, fundlock=D("1.5"))
            for c in (alice, bob, carol) for cur in (usdc, eth)}
    with CaptureQueriesContext(connection) as queries:
        by_keys = fund_locks_lock(keys={(alice.pk, usdc.pk), (bob.pk, eth.pk), (carol.pk, 999999)})
        assert by_keys[(alice.pk, usdc.pk)].currency.symbol == "USDC"  # read with it
    only_lock(queries, "accounts_fundlock")
    assert len(queries.captured_queries) == 1
    assert list(by_keys) == sorted([(alice.pk, usdc.pk), (bob.pk, eth.pk)], key=lambda k: rows[k].pk)
    for key, locked in by_keys.items():
        expected = FundLock.objects.select_related("currency").get(pk=rows[key].pk)
        assert fields(locked) == fields(expected)
        assert fields(locked.currency) == fields(expected.currency)
    both = fund_locks_lock(keys={(alice.pk, usdc.pk)}, client_ids=[bob.pk])
    assert set(both) == {(alice.pk, usdc.pk), (bob.pk, usdc.pk), (bob.pk, eth.pk)}
    assert list(both) == sorted(both, key=lambda k: rows[k].pk)
    assert fund_locks_lock() == {}
    assert fund_locks_lock(client_ids=[ClientFactory().pk]) == {}


@pytest.mark.django_db(transaction=True)
def test_a_runs_contracts_with_their_books_wait_for_a_book_holding_no_row():
    """The matcher's one statement for its run's books (shared) and contract rows keeps the lock order
    (``ccp.locks``: the books, then the contracts): while an auction holds one of the books, the matcher waits
    for it without holding any contract row, then takes them all."""
    contract = ContractFactory(trading_mode="continuous")
    other = ContractFactory(trading_mode="continuous", pair=PairFactory(base=CurrencyFactory(symbol="ETH")))
    ReceivedOrderFactory(contract=other)  # another pair's, of the same queue, with work waiting
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    locked = threading.Event()
    found = []

    def matcher():
        try:
            with transaction.atomic():
                found.extend(c.pk for c in book_contracts_lock(contract.pk, queues=1))
                locked.set()
        finally:
            connection.close()

    with psycopg.connect(**params) as auction, psycopg.connect(**params, autocommit=True) as other_session:
        auction.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_BOOK_LOCK, max(contract.pair_id, other.pair_id)])
        thread = threading.Thread(target=matcher)
        thread.start()
        for _ in range(500):  # until the matcher's statement waits for the book
            if other_session.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                     ).fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the matcher never waited for the book")
        # The contract rows are free meanwhile (NOWAIT: an error if anyone held one)
        other_session.execute("SELECT id FROM contracts_contract WHERE id = ANY(%s) FOR NO KEY UPDATE NOWAIT",
                              [[contract.pk, other.pk]])
        assert not locked.is_set()
        auction.rollback()
        thread.join(10)
    assert locked.is_set()
    assert found == sorted([contract.pk, other.pk])


def test_a_run_takes_its_queues_continuous_contracts_with_work_only():
    """``book_contracts_lock``: the given contract always; with ``queues``, the other continuous contracts whose
    id is the same modulo ``queues`` and that have received orders or modifications waiting."""
    made = [ContractFactory(trading_mode="continuous", strike_px=D(100000 + k)) for k in range(5)]
    auction = ContractFactory(strike_px=D(90000))
    for contract in [*made[1:], auction]:
        ReceivedOrderFactory(contract=contract)
    idle = ContractFactory(trading_mode="continuous", strike_px=D(80000))
    first = made[0]
    assert [c.pk for c in book_contracts_lock(first.pk)] == [first.pk]
    assert [c.pk for c in book_contracts_lock(first.pk, queues=1)] == [c.pk for c in made]
    assert [c.pk for c in book_contracts_lock(first.pk, queues=2)] == [c.pk for c in made if c.pk % 2 == first.pk % 2]
    assert [c.pk for c in book_contracts_lock(idle.pk, queues=1)] == sorted([idle.pk, *[c.pk for c in made[1:]]])
    assert book_contracts_lock(987654321) == []
