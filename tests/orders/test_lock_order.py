"""Every service takes its locks in the one order of ``ccp.locks``: read from the SQL each one sends.

A statement locks rows of a kind when it is a SELECT ... FOR UPDATE / SHARE (of the tables named after
OF, or every table it reads without OF), an UPDATE, or an INSERT ... ON CONFLICT DO UPDATE; the book
lock is the advisory lock. A service must never take a kind for the first time after a later kind.
"""

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ccp.accounts.services import fund_locks_adjust
from ccp.contracts.services import contracts_expire, contracts_halt, expiry_settle
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.services import order_cancel, order_validate
from tests.factories import ContractFactory, FundLockFactory, PairFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db

ORDER = ["book", "matching_auction", "contracts_contract", "orders_order", "accounts_fundlock", "risk_position",
         "risk_lockup", "accounts_client"]
EXPIRY = datetime(2026, 12, 1, tzinfo=UTC).date()
BEFORE = datetime(2026, 11, 30, 12, tzinfo=UTC)


def locked_kinds(sql: str) -> set[str]:
    """The kinds of rows (of ORDER) one statement locks."""
    sql = " ".join(sql.split())
    book = {"book"} if "pg_advisory_xact_lock" in sql else set()
    if book and "FOR NO KEY UPDATE OF" not in sql:
        return book
    # an UPDATE, also one in a WITH clause (a client's stream sequence taken by the statement that inserts orders)
    tables = set(re.findall(r'(?:^|\(|AS \()\s*UPDATE "?(\w+)"?', sql))
    if upsert := re.match(r'INSERT INTO "?(\w+)"?.* ON CONFLICT .* DO UPDATE', sql):
        tables.add(upsert.group(1))
    elif match := re.search(r"FOR (?:NO KEY UPDATE|UPDATE|SHARE|KEY SHARE)( OF .*)?$", sql):
        if match.group(1):
            tables |= set(re.findall(r'"?(\w+)"?', match.group(1)[4:]))
        else:
            tables |= set(re.findall(r'(?:FROM|JOIN) "?(\w+)"?', sql))
    return book | (tables & set(ORDER))


@contextmanager
def lock_order_kept(service: str):
    """Fails if the block's statements take a kind of lock for the first time after a later kind, or
    two kinds for the first time in one statement (but the book and its contracts,
    ``ccp.locks.book_contracts_lock``: in that order). A statement may lock again a kind the service took
    before with one more (a matcher run's last statement numbers its held contracts' books and its clients'
    streams): that waits for nothing more than the new kind alone."""
    with CaptureQueriesContext(connection) as queries:
        yield
    taken: list[str] = []
    for query in queries.captured_queries:
        kinds = locked_kinds(query["sql"])
        new = kinds - set(taken)
        assert len(new) <= 1 or new == {"book", "contracts_contract"}, (
            f"{service} locks {sorted(new)} in one statement: {query['sql'][:300]}")
        for kind in sorted(kinds, key=ORDER.index):
            later = [k for k in taken if ORDER.index(k) > ORDER.index(kind)]
            assert kind in taken or not later, f"{service} locks {kind} after {later}: {query['sql'][:300]}"
            taken.append(kind)
    assert taken, f"{service} took no lock: the trace is not reading its SQL"


@pytest.fixture
def market():
    pair = PairFactory()
    expiring = ContractFactory(pair=pair, expiry_date=EXPIRY)
    later = ContractFactory(pair=pair, expiry_date=EXPIRY + timedelta(days=30))
    clients = [FundLockFactory(currency=pair.quote, fundlock=D("1000000")).client for _ in range(4)]
    return pair, expiring, later, clients


def place(client, contract, side, price, now=BEFORE):
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D("0.1"))
    with lock_order_kept("order_validate"):
        order_validate(order_id=order.pk, now=now)
    order.refresh_from_db()
    return order


def test_every_service_locks_in_the_one_order(market):
    pair, expiring, later, (a, b, c, d) = market
    for contract in (expiring, later):
        place(a, contract, "buy", "2000")
        place(b, contract, "sell", "1900")
    held = place(c, expiring, "buy", "1000")
    rejected = ReceivedOrderFactory(client=d, contract=later, price=D("0.5"))
    with lock_order_kept("order_validate (rejected)"):
        order_validate(order_id=rejected.pk, now=BEFORE)

    auction = auction_open(pair=pair, now=BEFORE, interval=timedelta(seconds=10))
    with lock_order_kept("auction_close"):
        auction_close(auction_id=auction.pk, now=BEFORE, settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=BEFORE)
    with lock_order_kept("order_cancel (held: requested)"):
        order_cancel(client=c, order_id=held.pk, now=BEFORE)
    free = place(d, later, "sell", "3000")
    with lock_order_kept("order_cancel"):
        order_cancel(client=d, order_id=free.pk, now=BEFORE)
    place(d, expiring, "sell", "3000")
    with lock_order_kept("auction_apply"):
        auction_apply(auction_id=auction.pk, now=BEFORE)

    place(c, expiring, "buy", "1000")
    with lock_order_kept("contracts_halt"):
        assert contracts_halt(now=datetime(2026, 12, 1, tzinfo=UTC))
    with lock_order_kept("contracts_expire"):
        assert contracts_expire(now=datetime(2026, 12, 1, 12, tzinfo=UTC))
    with lock_order_kept("expiry_settle"):
        assert expiry_settle(pair=pair, expiry_date=EXPIRY, settlement_px=D("101000"),
                             now=datetime(2026, 12, 1, 12, 10, tzinfo=UTC))
    with lock_order_kept("fund_locks_adjust"):
        fund_locks_adjust(settle_value={}, order_value={}, lockup_value={}, fundlock={(a.pk, pair.quote_id): D("1")},
                          now=BEFORE)


@pytest.mark.parametrize(("sql", "kinds"), [
    ('SELECT "orders_order"."id" FROM "orders_order" INNER JOIN "contracts_contract" ON (x) WHERE y FOR UPDATE',
     {"orders_order", "contracts_contract"}),
    ('SELECT 1 FROM "orders_order" INNER JOIN "contracts_contract" ON (x) FOR NO KEY UPDATE OF "orders_order"',
     {"orders_order"}),
    ("UPDATE contracts_contract SET book_sequence = book_sequence + 1 WHERE id = 3", {"contracts_contract"}),
    ('INSERT INTO "risk_position" AS t ("a") SELECT "a" FROM s ON CONFLICT ("a") DO UPDATE SET "a" = 1',
     {"risk_position"}),
    ('INSERT INTO "orders_orderstatehistory" ("a") VALUES (1)', set()),
    ("SELECT pg_advisory_xact_lock_shared(7001, 1)", {"book"}),
    ("WITH run AS (x), book AS (SELECT pg_advisory_xact_lock_shared(7001, p) FROM run) SELECT a FROM book, "
     "contracts_contract JOIN contracts_pair AS p ON (y) FOR NO KEY UPDATE OF contracts_contract",
     {"book", "contracts_contract"}),
    ("UPDATE accounts_client AS c SET stream_sequence = c.stream_sequence + n.count FROM (x) n", {"accounts_client"}),
    ("WITH o AS (INSERT INTO orders_order (a) SELECT 1 RETURNING id), s AS (UPDATE accounts_client SET "
     "stream_sequence = stream_sequence + (1) WHERE id = 3 RETURNING stream_sequence) SELECT id FROM o",
     {"accounts_client"}),
    ('SELECT "a" FROM "accounts_client" WHERE "updated_at" > x', set()),
])
def test_the_trace_reads_what_a_statement_locks(sql, kinds):
    assert locked_kinds(sql) == kinds
