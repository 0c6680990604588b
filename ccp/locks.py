"""The one order in which the clearing house takes locks. Every service that locks takes them here.

PostgreSQL breaks a cycle of transactions waiting for each other's locks by failing one of them
("deadlock detected"): an order validation, or worse an auction's apply, lost after a second's wait.
No cycle can form if every transaction takes its locks in one global order. That order:

  1. book       a pair's book: an advisory lock, exclusive for an auction's close and apply, shared for
                cancels, the halt and the expiry (they wait for a running snapshot or apply)
  2. auction    the auction row
  3. contract   contract rows, by id. Bumping a book sequence (``UPDATE contracts_contract SET
                book_sequence``) locks the contract row, so a service that changes the book locks its
                contract here first
  4. order      order rows, by id
  5. fund lock  fund lock rows, by id
  6. position   position rows, by (client, contract)
  7. lockup     lockup rows, by (client, pair, expiry date)
  8. client     client rows, by id: numbering private stream messages (``client_stream_sequences_take``)
                bumps each client's ``stream_sequence``, after the rows above, when a service publishes

A service takes the rows of one kind at once (all it will touch, in the order above) and never a kind
listed before one it already holds. Locking a row again that the transaction holds waits for nothing.
Row locks are ``FOR NO KEY UPDATE`` of the row's own table only (``of=("self",)``): an insert that
references the row (an order of a contract, a cash movement of a client) takes a key-share lock,
which this does not block, and a joined row (a contract read with its order) is read, not locked.

Who takes what:
  order_validate      contract, order, the client's fund locks (all of them: the open-order cap counts
                      across currencies)
  order_cancel        book (shared), contract, order, fund lock
  contracts_halt      book (shared), contract, its open orders, their fund locks
  contracts_expire    contracts
  contract_trading_mode_set  book (exclusive), contract, its open orders, their fund locks
  expiry_settle       book (shared), contracts, fund locks, positions, lockups
  auction_open        nothing (a partial unique constraint keeps one open auction per pair)
  auction_close       book (exclusive), auction, its clients' fund locks (the reservations)
  auction_solve       auction (to store its result; the solver runs outside any transaction)
  auction_apply       book (exclusive), auction, contracts, orders, the fund locks of those orders and of the
                      reservations, then books through trades_clear (given those fund locks); an order whose
                      engine reason changes is locked with a second order statement, before the fund locks
  books_match         (ccp.book.services, a matcher run over one or more contracts of a queue) their pairs'
                      books (shared, by pair id) and their contract rows in one statement, their received
                      orders in one (sent with it: ``ccp.db.one_round_trip``, each its own statement), their
                      clients' fund locks in one (sent with the clients' read), then books through trades_clear once,
                      which takes the makers' fund locks without waiting (``nowait``: a second fund lock
                      statement; on ``FundLocksBusy`` the run is rolled back and run again with them in its
                      first)
                      The resting orders a run meets are read, not locked: every writer of a contract's
                      orders holds the contract's row first
  trades_clear        (ccp.clearing.booking) its caller holds the contracts (3) and orders (4); it takes
                      fund locks, positions, lockups. trades_book within it locks no row of the list:
                      the held contracts make the per-contract trade sequence it reads the last one,
                      and serialise the upsert of those contracts' candle rows (in key order)
  deposits, withdrawals and settlement confirmations take fund locks only (``fund_locks_adjust``)
  private stream messages (``ccp.streams.client_stream_publish_many``) their clients' rows (8), in id
                      order within a call: a service publishes after taking its other locks
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager

import psycopg
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import OperationalError, connection
from django.db.models import QuerySet

from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract, Currency, Pair, TradingMode
from ccp.db import Columns, Sent, number_array, times_loaded_in_c
from ccp.matching.models import Auction
from ccp.orders.models import Order
from ccp.orders.states import OrderState
from ccp.risk.models import Position

_BOOK_LOCK = 7001  # advisory lock namespace: a pair's book


_CONTRACT_PAIR = Contract._meta.get_field("pair")
_PAIR_BASE = Pair._meta.get_field("base")
_PAIR_QUOTE = Pair._meta.get_field("quote")
_FUND_LOCK_CURRENCY = FundLock._meta.get_field("currency")


def book_lock(pair_id: int, *, exclusive: bool) -> None:
    """1. Transaction-scoped lock on a pair's book: an auction's snapshot and apply take it exclusively,
    cancels, the halt and the expiry share it, so a cancel lands either before the snapshot or as a
    cancel request after it, and nothing changes the pair's orders while an auction books them."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_BOOK_LOCK, pair_id])


def auction_lock(auction_id: int, *, defer: Iterable[str] = ()) -> Auction:
    """2. The auction row (its large documents left unread where ``defer`` names them)."""
    return Auction.objects.select_for_update(no_key=True).defer(*defer).get(pk=auction_id)


def contracts_lock(contracts: QuerySet[Contract]) -> dict[int, Contract]:
    """3. These contract rows, by id."""
    return {c.pk: c for c in contracts.select_for_update(no_key=True, of=("self",)).order_by("id")}


def contract_lock(contract_id: int) -> Contract:
    """3. One contract row (its pair and currencies read with it, not locked). Raises
    ``Contract.DoesNotExist`` when there is none."""
    locked = _contracts_with_pairs("WHERE contracts_contract.id = %s", [contract_id]).result()
    if not locked:
        raise Contract.DoesNotExist(f"Contract matching id {contract_id} does not exist.")
    return locked[0]


# A matcher run's contracts (``book_contracts_lock``): the given one, with ``queues`` also every other continuous
# contract of its queue (id mod queues) with received orders or modifications waiting (an index probe per
# continuous contract: never a scan of every received order, an auction's backlog included).
_RUN = """
    WITH run AS MATERIALIZED (
        SELECT id, pair_id FROM contracts_contract WHERE id = %(contract)s{others}
    ), book AS MATERIALIZED (
        SELECT count(pg_advisory_xact_lock_shared({book}, p.pair_id::integer)) AS n
        FROM (SELECT DISTINCT pair_id FROM run ORDER BY pair_id) AS p
    )
"""
_RUN_OTHERS = """
        UNION
        SELECT id, pair_id FROM contracts_contract AS c WHERE trading_mode = %(continuous)s
            AND id %% %(queues)s = %(contract)s %% %(queues)s
            AND (EXISTS (SELECT FROM orders_order AS o WHERE o.contract_id = c.id AND o.state = %(received)s)
                 OR EXISTS (SELECT FROM orders_order AS o WHERE o.contract_id = c.id
                            AND o.modify_requested_at IS NOT NULL))"""


def book_contracts_lock(contract_id: int, *, queues: int | None = None) -> list[Contract]:
    """1 and 3 in one statement, a round trip each less: a continuous matcher run's contracts, by id (their
    pairs and currencies read with them, not locked). The contract ``contract_id`` and, with ``queues``, every
    other continuous contract whose id is the same modulo ``queues`` (its matcher's queue, ``ccp.book.tasks``)
    with received orders or modifications waiting. Their pairs' books (1, shared: ``book_lock``) are taken
    first, in pair id order, then the contract rows (3). The row locks are taken on the rows the join with the
    book locks returns, so after them whatever the plan. No contract: an empty list."""
    return book_contracts_sent(contract_id, queues=queues).result()


def book_contracts_sent(contract_id: int, *, queues: int | None = None) -> Sent:
    """``book_contracts_lock``'s statement sent (``ccp.db.Sent``: in ``ccp.db.one_round_trip`` with the statement
    after it), its ``result`` the contracts. It also notes their ids for
    the rest of the transaction (``RUN_CONTRACTS``, all of them once all are locked): the next statement, sent
    with it, names them so before this one has answered."""
    others = _RUN_OTHERS if queues else ""
    params = {"contract": contract_id, "queues": queues, "continuous": TradingMode.CONTINUOUS,
              "received": OrderState.RECEIVED}
    return _contracts_with_pairs("WHERE contracts_contract.id IN (SELECT id FROM run)", params,
                                 prefix=_RUN.format(others=others, book=_BOOK_LOCK), join="book, ", noted=True)


# The contracts a matcher run locked (``book_contracts_sent``), as an SQL array for the statements after it.
RUN_CONTRACTS = "string_to_array(current_setting('ccp.run_contracts'), ',')::bigint[]"
# Noted once every row is locked (the aggregate reads them all), always (one row, even with no contract).
_RUN_NOTED = """, locked AS MATERIALIZED ({select})
    SELECT locked.* FROM (SELECT set_config('ccp.run_contracts', coalesce(string_agg(l.run_contract_id::text, ','),
                                                                        ''), true)
                          FROM locked AS l(run_contract_id)) AS noted
    LEFT JOIN locked ON TRUE ORDER BY 1"""


def _contracts_with_pairs(where: str, params, *, prefix: str = "", join: str = "", noted: bool = False) -> Sent:
    """Contract rows locked by id (``ccp.locks`` 3) with their pair and currencies read, not locked: the
    statement sent, its ``result`` the contracts. ``noted``: their ids noted as ``RUN_CONTRACTS`` (``prefix``
    then opens a WITH clause)."""
    contract, pair, base, quote = Columns.of(Contract), Columns.of(Pair), Columns.of(Currency), Columns.of(Currency)

    def parse(rows: list[tuple]) -> list[Contract]:
        out = []
        for row in rows:
            if row[0] is None:
                continue  # ``noted``: no contract
            at = len(contract.attnames)
            locked, pair_row = contract.instance(row[:at]), pair.instance(row[at:at + len(pair.attnames)])
            at += len(pair.attnames)
            _PAIR_BASE.set_cached_value(pair_row, base.instance(row[at:at + len(base.attnames)]))
            _PAIR_QUOTE.set_cached_value(pair_row, quote.instance(row[at + len(base.attnames):]))
            _CONTRACT_PAIR.set_cached_value(locked, pair_row)
            out.append(locked)
        return out

    # the locked table unaliased: OF names it as ccp.locks' order does
    select = (f"SELECT {contract.select('contracts_contract')}, {pair.select('p')}, "
              f"{base.select('b')}, {quote.select('q')} FROM {join}contracts_contract "
              "JOIN contracts_pair AS p ON p.id = contracts_contract.pair_id "
              "JOIN contracts_currency AS b ON b.id = p.base_id "
              "JOIN contracts_currency AS q ON q.id = p.quote_id "
              f"{where} ORDER BY contracts_contract.id FOR NO KEY UPDATE OF contracts_contract")
    return Sent(f"{prefix}{_RUN_NOTED.format(select=select)}" if noted else f"{prefix}{select}", params, parse)


def orders_lock(orders: QuerySet[Order]) -> list[Order]:
    """4. These order rows, by id (rows joined by ``select_related`` are read, not locked)."""
    query = orders.query
    if query.select_related or len(query.alias_map) > 1 or query.is_sliced or query.distinct or query.combinator:
        return list(orders.select_for_update(no_key=True, of=("self",)).order_by("id"))
    # Only the filter is compiled (the rows and their recheck after a lock wait are the queryset's): the whole
    # model's select with its lock cost a matcher's batch of one order more than its matching.
    try:
        where, params = query.get_compiler(connection=connection).compile(query.where)
    except EmptyResultSet:
        return []
    except FullResultSet:
        where, params = "TRUE", []
    columns = Columns.of(Order)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.select('orders_order')} FROM orders_order WHERE {where} "
                       "ORDER BY orders_order.id FOR NO KEY UPDATE OF orders_order", params)
        return [columns.instance(row) for row in cursor.fetchall()]


def order_lock(order_id: int) -> Order:
    """4. One order row."""
    return Order.objects.select_for_update(no_key=True, of=("self",)).get(pk=order_id)


def order_rows_lock(columns: str, order_ids: Collection[int]) -> list[tuple]:
    """4. Order rows by id as plain tuples of ``columns``: an auction's tens of thousands of model
    instances would cost more than the rest of its booking."""
    with connection.cursor() as cursor:
        times_loaded_in_c(cursor)
        # One array parameter, not tens of thousands of IN parameters.
        cursor.execute(f"SELECT {columns} FROM orders_order WHERE id = ANY(%s::bigint[]) ORDER BY id "
                       "FOR NO KEY UPDATE", [number_array(sorted(order_ids))])
        return cursor.fetchall()


class FundLocksBusy(Exception):
    """``fund_locks_lock(..., nowait=True)`` found one of the rows locked by another transaction: the caller's
    transaction must end (which releases what it holds) and start again with ``keys`` locked among its first
    fund locks."""

    def __init__(self, keys: Collection[tuple[int, int]]):
        super().__init__(f"fund locks held by another transaction: {sorted(keys)}")
        self.keys = frozenset(keys)


def fund_locks_lock(*, keys: Collection[tuple[int, int]] = (), client_ids: Collection[int] = (),
                    nowait: bool = False) -> dict[tuple[int, int], FundLock]:
    """5. Fund lock rows by id: those of the (client, currency) ``keys`` and every one of ``client_ids``,
    by (client, currency), with their currency read (the currency row is shared by every client: read,
    not locked). Missing fund locks are simply absent.

    ``nowait``: for a transaction that holds fund locks already (a second fund lock statement breaks the one
    order: waiting here could close a cycle with a transaction that holds one of these and waits for one of
    the caller's): never wait; when one row is locked elsewhere, raise ``FundLocksBusy`` (the caller's
    transaction is then aborted: it starts again with these keys among its first fund locks)."""
    if not keys and not client_ids:
        return {}
    with fund_locks_busy(keys, nowait=nowait):
        return fund_locks_sent(keys=keys, client_ids=client_ids, nowait=nowait).result()


@contextmanager
def fund_locks_busy(keys: Collection[tuple[int, int]], *, nowait: bool) -> Iterator[None]:
    """With ``nowait``: a ``fund_locks_sent(keys=keys, nowait=True)`` in the block (or in a ``ccp.db.one_round_trip``
    it holds) that found one of the rows locked elsewhere raises ``FundLocksBusy``."""
    try:
        yield
    except OperationalError as exc:
        if nowait and isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise FundLocksBusy(keys) from exc
        raise


def fund_locks_sent(*, keys: Collection[tuple[int, int]] = (), client_ids: Collection[int] = (),
                    nowait: bool = False) -> Sent:
    """``fund_locks_lock``'s statement sent (``ccp.db.Sent``: in ``ccp.db.one_round_trip`` with others), its
    ``result`` the fund locks by (client, currency). At least one key or client. ``nowait``: the lock error is
    Django's ``OperationalError`` (``fund_locks_lock`` turns it into ``FundLocksBusy``)."""
    wanted, clients = set(keys), set(client_ids)
    fund_lock, currency = Columns.of(FundLock), Columns.of(Currency)
    sql = (f"SELECT {fund_lock.select('accounts_fundlock')}, {currency.select('c')} FROM accounts_fundlock "
           "JOIN contracts_currency AS c ON c.id = accounts_fundlock.currency_id "
           "WHERE accounts_fundlock.client_id = ANY(%s)")
    params = [sorted({c for c, _ in wanted} | clients)]
    if not clients:
        sql += " AND accounts_fundlock.currency_id = ANY(%s)"
        params.append(sorted({c for _, c in wanted}))
    at = len(fund_lock.attnames)

    def parse(rows: list[tuple]) -> dict[tuple[int, int], FundLock]:
        locked = {}
        for row in rows:
            f = fund_lock.instance(row[:at])
            if f.client_id in clients or (f.client_id, f.currency_id) in wanted:
                _FUND_LOCK_CURRENCY.set_cached_value(f, currency.instance(row[at:]))
                locked[(f.client_id, f.currency_id)] = f
        return locked

    return Sent(sql + " ORDER BY accounts_fundlock.id FOR NO KEY UPDATE OF accounts_fundlock"
                + (" NOWAIT" if nowait else ""), params, parse)


def positions_lock(positions: QuerySet[Position]) -> list[Position]:
    """6. These position rows, by (client, contract)."""
    return list(positions.select_for_update(no_key=True).order_by("client_id", "contract_id"))


def series_position_rows_sent(client_ids: Collection[int], series: Collection[tuple[int, object]]) -> Sent:
    """6. The positions of these clients in every contract of these (pair id, expiry date) series, by (client,
    contract), as plain rows ``(client_id, contract_id, quantity, cost, realised_pnl)`` (a booking reads
    thousands), sent (``ccp.db.Sent``: in ``ccp.db.one_round_trip`` with others): the contracts need not be read
    first."""
    pairs, expiries = zip(*sorted(series, key=str), strict=True) if series else ((), ())
    return Sent("SELECT client_id, contract_id, quantity, cost, realised_pnl FROM risk_position "
                "WHERE client_id = ANY(%s::bigint[]) AND contract_id IN (SELECT c.id FROM contracts_contract AS c "
                "JOIN unnest(%s::bigint[], %s::date[]) AS s(pair_id, expiry_date) "
                "ON c.pair_id = s.pair_id AND c.expiry_date = s.expiry_date) "
                "ORDER BY client_id, contract_id FOR NO KEY UPDATE OF risk_position",
                [number_array(sorted(client_ids)), number_array(pairs), list(expiries)])


def perp_position_rows_lock(client_ids: Collection[int], contract_ids: Collection[int]) -> list[tuple]:
    """6. The positions of these clients in these perpetuals, by (client, contract), with the margin:
    ``(client_id, contract_id, quantity, cost, realised_pnl, margin_mode, margin)``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_id, contract_id, quantity, cost, realised_pnl, margin_mode, margin "
                       "FROM risk_position WHERE client_id = ANY(%s) AND contract_id = ANY(%s) "
                       "ORDER BY client_id, contract_id FOR NO KEY UPDATE", [sorted(client_ids), sorted(contract_ids)])
        return cursor.fetchall()


def lockup_rows_lock(client_ids: Collection[int], pair_ids: Collection[int], expiry_dates: Collection) -> list[tuple]:
    """7. The lockup rows of these clients, pairs and expiry dates, by (client, pair, expiry date), as plain
    rows ``(client_id, pair_id, expiry_date, amount)``: an auction's apply reads thousands."""
    return lockup_rows_sent(client_ids, pair_ids, expiry_dates).result()


def lockup_rows_sent(client_ids: Collection[int], pair_ids: Collection[int], expiry_dates: Collection) -> Sent:
    """``lockup_rows_lock``'s statement sent (``ccp.db.Sent``: in ``ccp.db.one_round_trip`` with others)."""
    return Sent("SELECT client_id, pair_id, expiry_date, amount FROM risk_lockup WHERE client_id = ANY(%s) "
                "AND pair_id = ANY(%s) AND expiry_date = ANY(%s::date[]) "
                "ORDER BY client_id, pair_id, expiry_date FOR NO KEY UPDATE",
                [sorted(client_ids), sorted(pair_ids), sorted(expiry_dates)])


def client_stream_sequence_take_sql(*, count: str) -> str:
    """8. A client row as an UPDATE to put in a statement's WITH clause: add ``count`` (an SQL expression, say
    the rows an insert in the same statement returned) to the stream sequence of the client whose id is the
    one parameter, when ``count`` is not 0; RETURNING its new last number. One client: no lock order among
    client rows to keep. Saves order entry the round trip of ``client_stream_sequences_take``."""
    return (f"UPDATE accounts_client SET stream_sequence = stream_sequence + ({count}) "
            f"WHERE id = %s AND ({count}) > 0 RETURNING stream_sequence")


# 8. Client rows, by id, locked in id order by the subquery (its sort runs below its row locks): add each count to
# its client's stream sequence. Parameters: the ids (bigint[]), then the ids and their counts (bigint[] each).
CLIENT_STREAM_SEQUENCES_SQL = """
    UPDATE accounts_client AS c SET stream_sequence = c.stream_sequence + n.count
    FROM (SELECT id FROM accounts_client WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE) AS l,
         unnest(%s::bigint[], %s::bigint[]) AS n(id, count)
    WHERE c.id = l.id AND c.id = n.id RETURNING c.id, c.stream_sequence"""


def client_stream_sequences_take(counts: Mapping[int, int]) -> dict[int, int]:
    """8. Client rows, by id: add ``counts`` (client id -> messages) to each client's stream sequence in
    one statement; returns each client's new last number (its messages take the ``count`` before it)."""
    ids = sorted(counts)
    with connection.cursor() as cursor:
        cursor.execute(CLIENT_STREAM_SEQUENCES_SQL, [ids, ids, [counts[i] for i in ids]])
        return dict(cursor.fetchall())
