from __future__ import annotations

import contextlib
import functools
import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, models, transaction

from ccp.accounts.models import Client
from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.book.versions import books_touched
from ccp.clock import require_aware
from ccp.contracts.models import Contract, TradingMode
from ccp.db import Columns, bulk_insert_rows, bulk_update_rows, unnest_source
from ccp.errors import ApplicationError, Conflict, NotFound
from ccp.locks import (
    book_lock,
    client_stream_sequence_take_sql,
    contract_lock,
    contracts_lock,
    fund_locks_lock,
    order_lock,
    orders_lock,
)
from ccp.marketdata.services import books_bbo_publish
from ccp.matching.selectors import auction_held_order_ids, auction_holds
from ccp.money import ZERO, money_str
from ccp.orders.models import Order, OrderStateHistory, SelfTrade, Side, TimeInForce
from ccp.orders.results import order_results_signal
from ccp.orders.rules import REASONS, order_rule_violation, order_value, order_value_netted
from ccp.orders.selectors import open_orders_count
from ccp.orders.serializers import order_payload
from ccp.orders.states import BOOK_STATES, OPEN_STATES, OrderState, transition_allowed
from ccp.perps.cross import cross_unrealised_loss
from ccp.perps.models import Perpetual
from ccp.risk.collateral import collateral_covers
from ccp.risk.models import Position
from ccp.risk.selectors import portfolio_legs
from ccp.streams import (
    book_group,
    client_stream_messages,
    client_stream_publish,
    client_stream_publish_many,
    stream_messages_publish,
    stream_publish,
    stream_send_with,
)


@dataclass(frozen=True)
class OrderRequest:
    """What a client asks for; two requests with one client_order_id must be the same request."""

    client_order_id: str
    contract: Contract
    side: str
    kind: str
    price: Decimal
    quantity: Decimal
    time_in_force: str = TimeInForce.GTC
    reduce_only: bool = False
    self_trade_prevention: str = SelfTrade.CANCEL_INCOMING
    trigger: str = ""
    trigger_price: Decimal | None = None
    trigger_source: str = ""
    attached: dict | None = None
    leverage: Decimal | None = None  # perpetuals only
    margin_mode: str = ""  # perpetuals only: cross or isolated

    def matches(self, order: Order) -> bool:
        asked = {name: getattr(order, name) for name in _TERMS}
        asked["quantity"] = order.quantity_requested or order.quantity  # before a reduce-only cut
        return (order.contract_id, asked) == (self.contract.pk, {name: getattr(self, name) for name in _TERMS})


# What an order asks for, beyond its client, id and contract: the same names on OrderRequest and Order.
_TERMS = ("side", "kind", "price", "quantity", "time_in_force", "reduce_only", "self_trade_prevention", "trigger",
          "trigger_price", "trigger_source", "attached", "leverage",
          "margin_mode")


def order_violation(*, order: Order | OrderRequest, contract: Contract, now: datetime) -> str | None:
    """The first rule (``ccp.orders.rules``) a stored or requested order breaks, or None."""
    return order_rule_violation(contract=contract, now=now, **{name: getattr(order, name) for name in _TERMS})


def _order_event(order: Order) -> dict:
    return {"type": "order", "order": order_payload(order)}


def order_transition(*, order: Order, new_state: str, now: datetime, reason: str = "") -> None:
    """Move a locked order to ``new_state`` through the transition table, with a history row and
    a private-stream event after commit. ValueError on a transition the table does not allow."""
    if not transition_allowed(order.state, new_state):
        raise ValueError(f"order {order.pk}: {order.state} -> {new_state} is not a valid transition")
    OrderStateHistory.objects.create(order=order, from_state=order.state, to_state=new_state, reason=reason,
                                     filled_quantity=order.filled_quantity, at=now)
    order.state, order.updated_at = new_state, now
    if new_state == OrderState.REJECTED:
        order.reject_reason = reason
    order.save()
    client_stream_publish(order.client_id, _order_event(order))


def book_levels_changed(*, contract_id: int, levels: list[tuple[str, Decimal]]) -> None:
    """Give each changed (side, price) level of a contract the next book sequence number (the UPDATE
    locks the contract row: book changes of one contract are serial) and publish the levels' new
    totals after commit, in sequence order."""
    books_levels_changed(levels={contract_id: levels})


# Number a contract's changed levels (the UPDATE locks its row: book changes of one contract are serial),
# then read each changed level's totals and the best level of each side with its totals: one statement.
_LEVELS_CHANGED = """
    WITH bumped AS (
        UPDATE contracts_contract AS c SET book_sequence = c.book_sequence + n.count
        FROM unnest(%(ids)s::bigint[], %(counts)s::bigint[]) AS n(id, count) WHERE c.id = n.id
        RETURNING c.id, c.book_sequence),
    book AS MATERIALIZED (
        SELECT contract_id, side, price, quantity - filled_quantity AS open FROM orders_order
        WHERE contract_id = ANY(%(ids)s) AND state = ANY(%(states)s)),
    best AS (
        SELECT contract_id, side, CASE WHEN side = %(buy)s THEN max(price) ELSE min(price) END AS price
        FROM book GROUP BY contract_id, side),
    wanted AS (
        SELECT * FROM unnest(%(level_ids)s::bigint[], %(sides)s::text[], %(prices)s::numeric[])
            AS l(contract_id, side, price)
        UNION SELECT contract_id, side, price FROM best)
    SELECT w.contract_id, w.side, w.price, sum(b.open), count(b.contract_id),
           EXISTS (SELECT FROM best AS x WHERE (x.contract_id, x.side, x.price) = (w.contract_id, w.side, w.price)),
           (SELECT book_sequence FROM bumped WHERE bumped.id = w.contract_id)
    FROM wanted AS w LEFT JOIN book AS b ON (b.contract_id, b.side, b.price) = (w.contract_id, w.side, w.price)
    GROUP BY w.contract_id, w.side, w.price
"""


def books_levels_changed(*, levels: Mapping[int, Iterable[tuple[str, Decimal]]],
                         books: Mapping[int, tuple[Mapping, Mapping]] | None = None,
                         numbered: Mapping[int, int] | None = None) -> None:
    """``book_levels_changed`` of several contracts (contract id -> its changed levels) in one statement
    (the levels numbered, their totals and the best bid and offer read), contracts in id order (an
    auction changes a whole pair's books). ``books``: contract id -> (each changed level's totals by (side,
    price): (quantity, orders), the best bid and offer as ``books_bbo`` gives them), when the caller knows
    them as the database has them (the continuous matcher's engines): then the statement only numbers the
    levels, it reads no order. ``numbered`` (with ``books``): each contract's new last book sequence when the
    caller moved them itself by its count of distinct changed levels (``ccp.book.versions.books_numbered``):
    then no statement at all."""
    changed = {contract_id: sorted(set(lv)) for contract_id, lv in sorted(levels.items()) if lv}
    if not changed:
        return
    if books is not None:
        if numbered is None:
            with connection.cursor() as cursor:
                cursor.execute(_LEVELS_NUMBERED, [list(changed), [len(v) for v in changed.values()]])
                numbered = dict(cursor.fetchall())
        totals = {(contract_id, side, price): total for contract_id in changed
                  for (side, price), total in books[contract_id][0].items()}
        bbo = {contract_id: books[contract_id][1] for contract_id in changed}
        _levels_publish(changed, totals, numbered, bbo)
        return
    flat = [(contract_id, side, price) for contract_id, lv in changed.items() for side, price in lv]
    with connection.cursor() as cursor:
        cursor.execute(_LEVELS_CHANGED, {
            "ids": list(changed), "counts": [len(v) for v in changed.values()], "states": sorted(BOOK_STATES),
            "buy": Side.BUY, "level_ids": [c for c, _, _ in flat], "sides": [s for _, s, _ in flat],
            "prices": [p for _, _, p in flat]})
        rows = cursor.fetchall()
    totals, last = {}, {}
    bbo = {contract_id: {"bid": None, "bid_quantity": None, "ask": None, "ask_quantity": None}
           for contract_id in changed}
    for contract_id, side, price, quantity, count, best, sequence in rows:
        totals[(contract_id, side, price)] = (quantity or ZERO, count)
        last[contract_id] = sequence
        if best:
            name = "bid" if side == Side.BUY else "ask"
            bbo[contract_id].update({name: price, f"{name}_quantity": quantity})
    _levels_publish(changed, totals, last, bbo)


# ``_LEVELS_CHANGED``'s numbering alone (the caller knows the levels' totals), the same UPDATE: of contract rows
# its caller holds (``ccp.locks`` 3).
_LEVELS_NUMBERED = """
    WITH bumped AS (
        UPDATE contracts_contract AS c SET book_sequence = c.book_sequence + n.count
        FROM unnest(%s::bigint[], %s::bigint[]) AS n(id, count) WHERE c.id = n.id
        RETURNING c.id, c.book_sequence)
    SELECT id, book_sequence FROM bumped
"""


def _levels_publish(changed: Mapping[int, list[tuple[str, Decimal]]], totals: Mapping[tuple, tuple],
                    last: Mapping[int, int], bbo: Mapping[int, Mapping]) -> None:
    """After commit, one ``book.level`` per changed level (numbered up to each contract's ``last``), then the
    best bid and offer where they moved."""
    for contract_id, contract_levels in changed.items():
        first = last[contract_id] - len(contract_levels) + 1
        for sequence, (side, price) in enumerate(contract_levels, start=first):
            quantity, count = totals.get((contract_id, side, price), (ZERO, 0))
            stream_publish(book_group(contract_id), {
                "type": "book.level", "sequence": sequence, "side": side, "price": money_str(price),
                "quantity": money_str(quantity), "orders": count})
    books_bbo_publish(levels=changed, sequences=last, bbo=bbo)


def book_level_changed(*, contract_id: int, side: str, price: Decimal) -> None:
    book_levels_changed(contract_id=contract_id, levels=[(side, price)])


def order_submit(*, client: Client, request: OrderRequest, now: datetime, validate_later: bool = True,
                 open_count: int | None = None, payloads: dict[int, dict] | None = None) -> tuple[Order, bool]:
    """Store an order as received and queue its validation after commit (unless ``validate_later`` is
    false: the caller queues it, with others, ``orders_validate_later``). Returns (order, created).
    ``orders_submit`` of one request: its refusal is raised."""
    (entered,) = orders_submit(client=client, requests=[request], now=now, validate_later=validate_later,
                               open_count=open_count, payloads=payloads)
    if isinstance(entered, ApplicationError):
        raise entered
    return entered


Entered = tuple[Order, bool] | ApplicationError  # (order, created), or why the request was refused


def orders_submit(*, client: Client, requests: Sequence[OrderRequest], now: datetime,
                  validate_later: bool = True, open_count: int | None = None,
                  payloads: dict[int, dict] | None = None) -> list[Entered]:
    """Store a client's orders as received, in one transaction and a few statements whatever their number
    (the open orders counted once, the new orders, their history rows and their private-stream numbers
    written by one statement), and queue their validation after commit (unless
    ``validate_later`` is false: the caller queues them, ``orders_validate_later``). Returns, in request
    order, (order, created) or the refusal (an ApplicationError, not raised); one refusal does not refuse
    the others.

    Idempotent on (client, client_order_id): the same request again returns the stored order;
    a different request under the same id is refused with ``client_order_id_reused`` (a retry of an order
    stored before a rule broke, say the contract halted since, gets that order). A client with
    CCP_MAX_OPEN_ORDERS open orders (received ones included) is refused with ``too_many_open_orders``
    (409); submissions racing each other can all pass that count, and the validator rejects those
    beyond the cap (``order_validate``, ``ccp.book.services``). The insert is ON CONFLICT DO NOTHING in
    client_order_id order: a concurrent submission of the same id waits for the other's commit, then
    gets its order. A client_order_id sent twice in one call is entered as if sent again after the call.
    ``open_count``: the client's open orders as the caller just counted them (``open_orders_count``), if it
    did, with another read. ``payloads``: filled with each created order's representation (``order_payload``,
    by order id) as its stream event carries it, for a caller that answers with it (not to be changed).

    Every write is that one statement (the other statements only read, and each read sees what was committed
    when it ran, in a transaction or not): outside a transaction it runs alone and commits by itself, without
    a BEGIN and a COMMIT round trip. In the caller's transaction, or when a client_order_id comes twice (a
    second insert), in a transaction (a savepoint in the caller's).
    """
    in_one = connection.in_atomic_block or len({r.client_order_id for r in requests}) < len(requests)
    with transaction.atomic() if in_one else contextlib.nullcontext():
        return _orders_submit(client=client, requests=requests, now=now, validate_later=validate_later,
                              open_count=open_count, payloads=payloads)


def _orders_submit(*, client: Client, requests: Sequence[OrderRequest], now: datetime, validate_later: bool,
                   open_count: int | None, payloads: dict[int, dict] | None) -> list[Entered]:
    now = require_aware(now)
    out: list[Entered | None] = [None] * len(requests)
    first: dict[str, int] = {}  # client_order_id -> its first request; the others are entered after
    for i, request in enumerate(requests):
        first.setdefault(request.client_order_id, i)
    unique = sorted(first.values())
    violations = {i: order_violation(order=requests[i], contract=requests[i].contract, now=now) for i in unique}
    _margin_modes_check(client, requests, violations)
    cap = settings.CCP_MAX_OPEN_ORDERS
    if open_count is None:
        open_count = open_orders_count(client_id=client.pk)
    # Stored orders looked up first only when a rule or the cap refuses some: a retry gets its order anyway.
    existing = _orders_by_client_id(client, [requests[i].client_order_id for i in unique]) if (
        any(violations.values()) or open_count + len(unique) > cap) else {}
    new: list[tuple[int, Order]] = []
    for i in unique:
        request, violation = requests[i], violations[i]
        if violation is None and open_count >= cap:
            violation = "too_many_open_orders"
        if request.client_order_id in existing:
            out[i] = _entered_again(request, existing[request.client_order_id], violation)
        elif violation:
            out[i] = _refusal(violation)
        else:
            open_count += 1
            new.append((i, _order_received(client, request, now)))
    inserted, stream_last = _orders_insert([order for _, order in new], now=now)
    lost = [order.client_order_id for _, order in new if order.client_order_id not in inserted]
    stored = _orders_by_client_id(client, lost) if lost else {}  # stored meanwhile by a concurrent request
    created = []
    for i, order in new:
        if order.client_order_id in inserted:
            order.pk = inserted[order.client_order_id]
            out[i] = (order, True)
            created.append(order)
        else:
            out[i] = _entered_again(requests[i], stored[order.client_order_id], None)
    _orders_created(client, created, stream_last, validate_later=validate_later, payloads=payloads)
    again = [i for i in range(len(requests)) if out[i] is None]
    if again:
        for i, entered in zip(again, orders_submit(client=client, requests=[requests[i] for i in again], now=now,
                                                   validate_later=validate_later, payloads=payloads), strict=True):
            out[i] = entered
    return out


def _orders_created(client: Client, created: list[Order], stream_last: int | None, *, validate_later: bool,
                    payloads: dict[int, dict] | None) -> None:
    """After the insert of ``created`` (``stream_last``: the client's private stream number it took): their
    stream events published and their validation queued (after commit), ``payloads`` filled."""
    events = [_order_event(order) for order in created]
    if payloads is not None:
        payloads.update((order.pk, event["order"]) for order, event in zip(created, events, strict=True))
    messages = client_stream_messages([(client.pk, event) for event in events], {client.pk: stream_last}) if events \
        else []
    if validate_later and created and not connection.in_atomic_block:
        _orders_announce(messages, created)
    else:
        if messages:
            stream_messages_publish(messages)
        if validate_later:
            orders_validate_later(created)


def order_submit_seen(*, client: Client, request: OrderRequest, contract_fingerprint: str, now: datetime,
                      payloads: dict[int, dict] | None = None) -> tuple[Order, bool] | None:
    """``order_submit`` of one request, its contract (``request.contract``) as the caller
    read it before, not again: one statement reads the client's open orders and the contract's
    ``contract_fingerprint_sql`` and inserts the order only when the fingerprint is ``contract_fingerprint``
    (the contract and its perpetual terms are as checked here, its book sequence aside) and the client is under
    CCP_MAX_OPEN_ORDERS; the rest as ``order_submit`` (a stored client_order_id gets its order or
    ``client_order_id_reused``). None, having written nothing, when the contract changed, the cap is reached
    or the request breaks a rule: the caller enters it with fresh reads (``order_submit``), which answers those.
    Saves a single order the statement of its reads. Holds while ``order_rule_violation`` reads only the contract
    and its perpetual terms: a rule that reads another row must bring that row into the fingerprint."""
    now = require_aware(now)
    violations = {0: order_violation(order=request, contract=request.contract, now=now)}
    _margin_modes_check(client, [request], violations)
    if violations[0] is not None:
        return None
    order = _order_received(client, request, now)
    with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():  # as orders_submit
        guarded, pk, stream_last = _order_insert_seen(order, now=now, contract_fingerprint=contract_fingerprint)
        if not guarded:
            return None
        if pk is None:  # stored before (by a concurrent request, or this is a retry)
            stored = _orders_by_client_id(client, [order.client_order_id])[order.client_order_id]
            entered = _entered_again(request, stored, None)
            if isinstance(entered, ApplicationError):
                raise entered
            return entered
        order.pk = pk
        _orders_created(client, [order], stream_last, validate_later=True, payloads=payloads)
    return order, True


@functools.cache
def _order_columns() -> tuple[list, dict[str, int]]:
    """What ``Order()`` gives each column (its field's default: none is callable) in column order, and each
    attribute's place in it."""
    fields = Order._meta.concrete_fields
    assert not any(f.has_default() and callable(f.default) for f in fields)
    return [f.get_default() for f in fields], {f.attname: i for i, f in enumerate(fields)}


_ORDER_CLIENT, _ORDER_CONTRACT = Order._meta.get_field("client"), Order._meta.get_field("contract")


def _order_received(client: Client, request: OrderRequest, now: datetime) -> Order:
    """``Order(client=client, contract=request.contract, client_order_id=..., state=RECEIVED, created_at=now,
    updated_at=now, <the request's terms>)``, built from its values in column order (``Columns.new``): Model.__init__
    by position costs a quarter of its keywords (a batch of 100 paid 2.8 ms for them), without it less again."""
    values, at = _order_columns()
    values = values.copy()
    values[at["client_id"]], values[at["contract_id"]] = client.pk, request.contract.pk
    values[at["client_order_id"]], values[at["state"]] = request.client_order_id, OrderState.RECEIVED
    values[at["created_at"]] = values[at["updated_at"]] = now
    for name in _TERMS:
        values[at[name]] = getattr(request, name)
    order = Columns.of(Order).new(values)
    _ORDER_CLIENT.set_cached_value(order, client)  # as the keywords would: order.client is this client
    _ORDER_CONTRACT.set_cached_value(order, request.contract)
    return order


def _margin_modes_check(client: Client, requests: Sequence[OrderRequest], violations: dict[int, str | None]) -> None:
    """Set ``margin_mode_mismatch`` on each request (by index, not yet refused) on a perpetual whose margin mode
    differs from the client's open position's there: one query, only when such requests exist. Reduce-only
    orders take either mode: they only close, and the position keeps its own."""
    asking = {i: requests[i] for i, violation in violations.items() if violation is None
              and requests[i].contract.is_perpetual and not requests[i].reduce_only}
    if not asking:
        return
    modes = dict(Position.objects.filter(client=client, contract_id__in={r.contract.pk for r in asking.values()})
                 .exclude(quantity=0).values_list("contract_id", "margin_mode"))
    for i, request in asking.items():
        if modes.get(request.contract.pk, request.margin_mode) != request.margin_mode:
            violations[i] = "margin_mode_mismatch"


def _entered_again(request: OrderRequest, order: Order, violation: str | None) -> Entered:
    """A request whose client_order_id names a stored order: that order if it is the same request; else
    the rule it breaks, or ``client_order_id_reused``."""
    if request.matches(order):
        return order, False
    if violation:
        return _refusal(violation)
    return Conflict("This client_order_id was used for a different order.", code="client_order_id_reused",
                    extra={"order_id": order.pk})


def _refusal(violation: str) -> ApplicationError:
    if violation == "too_many_open_orders":
        return Conflict(REASONS[violation], code=violation, extra={"limit": settings.CCP_MAX_OPEN_ORDERS})
    if violation == "margin_mode_mismatch":
        return Conflict(REASONS[violation], code=violation)
    return ApplicationError(REASONS[violation], code=violation)


def _orders_by_client_id(client: Client, client_order_ids: list[str]) -> dict[str, Order]:
    return {o.client_order_id: o for o in Order.objects.filter(
        client=client, client_order_id__in=client_order_ids).select_related("contract")}


_ORDER_COLUMNS = [f for f in Order._meta.concrete_fields if not f.primary_key]
_ORDER_JSON = [f for f in _ORDER_COLUMNS if isinstance(f, models.JSONField)]  # adapted; the others go as they are
_ORDER_JSON_AT = [i for i, f in enumerate(_ORDER_COLUMNS) if f in _ORDER_JSON]
_ORDER_VALUES = operator.attrgetter(*(f.attname for f in _ORDER_COLUMNS))  # an order's values of _ORDER_COLUMNS
_ORDERS_INSERT = """
    WITH o AS (INSERT INTO {orders} ({columns}) {rows}
               ON CONFLICT (client_id, client_order_id) DO NOTHING RETURNING id, client_order_id),
    h AS (INSERT INTO {history} (order_id, from_state, to_state, reason, filled_quantity, at)
          SELECT o.id, NULL, %s, '', 0, %s FROM o),
    s AS ({sequence})
    SELECT id, client_order_id, (SELECT stream_sequence FROM s) FROM o
"""
_VALUES_MAX = 4  # up to this many orders a VALUES list (cheapest for one); more, one array per column


@functools.cache
def _orders_insert_sql(values: int, source: str = "") -> str:
    """``_ORDERS_INSERT`` of ``values`` rows as a VALUES list, or (0) of the rows of ``source`` (``unnest_source``)."""
    columns = ", ".join(f'"{f.column}"' for f in _ORDER_COLUMNS)
    if values:
        row = "(" + ", ".join(["%s"] * len(_ORDER_COLUMNS)) + ")"
        rows = f"VALUES {', '.join([row] * values)}"
    else:
        rows = f"SELECT {columns} FROM {source} ORDER BY v.client_order_id"
    return _ORDERS_INSERT.format(orders=Order._meta.db_table, history=OrderStateHistory._meta.db_table,
                                 columns=columns, rows=rows,
                                 sequence=client_stream_sequence_take_sql(count="SELECT count(*) FROM o"))


def _orders_insert(orders: list[Order], *, now: datetime) -> tuple[dict[str, int], int | None]:
    """Insert new orders (of one client) and their 'received' history rows in one statement, in
    client_order_id order; an order whose (client, client_order_id) exists is skipped (ON CONFLICT DO
    NOTHING: a concurrent insert of it is waited for). The same statement moves the client's private stream
    counter by the orders inserted (``ccp.locks.client_stream_sequence_take_sql``: their events' numbers,
    without a statement of their own). Returns client_order_id -> id of those inserted, and the client's new
    last stream number (None when none was inserted).
    A few orders go as a VALUES list, more as one array per column (``ccp.db.unnest_source``: a VALUES list
    of a hundred orders has thousands of parameters, which the driver splits and converts one by one)."""
    if not orders:
        return {}, None
    orders = sorted(orders, key=lambda order: order.client_order_id)
    rows = [{f.attname: getattr(order, f.attname) for f in _ORDER_COLUMNS} for order in orders]
    for row in rows:
        for f in _ORDER_JSON:
            row[f.attname] = f.get_db_prep_save(row[f.attname], connection)
    if len(rows) <= _VALUES_MAX:
        sql, params = _orders_insert_sql(len(rows)), [row[f.attname] for row in rows for f in _ORDER_COLUMNS]
    else:
        source, params = unnest_source(_ORDER_COLUMNS, rows)
        sql = _orders_insert_sql(0, source)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, OrderState.RECEIVED, now, orders[0].client_id])
        rows = cursor.fetchall()
    return {client_order_id: pk for pk, client_order_id, _ in rows}, rows[0][2] if rows else None


def contract_fingerprint_sql(contract: str, perpetual: str) -> str:
    """An SQL expression of a contract row (alias ``contract``) and its perpetual terms' (``perpetual``, from a
    LEFT JOIN): a digest of every column but the book sequence (bumped by every book change), so that a
    contract read earlier with the same digest is the contract now (``order_submit_seen``)."""
    columns = [f'{contract}."{f.column}"' for f in Contract._meta.concrete_fields if f.attname != "book_sequence"]
    columns += [f'{perpetual}."{f.column}"' for f in Perpetual._meta.concrete_fields]
    return f"md5(ROW({', '.join(columns)})::text)"


_ORDER_INSERT_SEEN = """
    WITH g AS (SELECT FROM {contracts} AS c LEFT JOIN {perpetuals} AS p ON p.contract_id = c.id
               WHERE c.id = %s AND {fingerprint} = %s
               AND (SELECT count(*) FROM {orders} WHERE client_id = %s AND state IN ({open_states})) < %s),
    o AS (INSERT INTO {orders} ({columns}) SELECT {values} WHERE EXISTS (SELECT FROM g)
          ON CONFLICT (client_id, client_order_id) DO NOTHING RETURNING id),
    h AS (INSERT INTO {history} (order_id, from_state, to_state, reason, filled_quantity, at)
          SELECT o.id, NULL, %s, '', 0, %s FROM o),
    s AS ({sequence})
    SELECT EXISTS (SELECT FROM g), o.id, (SELECT stream_sequence FROM s) FROM (SELECT) AS one LEFT JOIN o ON true
"""


@functools.cache
def _order_insert_seen_sql() -> str:
    assert all(state.isidentifier() for state in OPEN_STATES)
    return _ORDER_INSERT_SEEN.format(
        contracts=Contract._meta.db_table, perpetuals=Perpetual._meta.db_table, orders=Order._meta.db_table,
        history=OrderStateHistory._meta.db_table, fingerprint=contract_fingerprint_sql("c", "p"),
        open_states=", ".join(f"'{state}'" for state in sorted(OPEN_STATES)),
        columns=", ".join(f'"{f.column}"' for f in _ORDER_COLUMNS), values=", ".join(["%s"] * len(_ORDER_COLUMNS)),
        sequence=client_stream_sequence_take_sql(count="SELECT count(*) FROM o"))


def _order_insert_seen(order: Order, *, now: datetime,
                       contract_fingerprint: str) -> tuple[bool, int | None, int | None]:
    """``_orders_insert`` of one order, guarded (``order_submit_seen``): (whether the contract's fingerprint was
    ``contract_fingerprint`` and the client under the open-order cap, the new order's id (None when not
    inserted), the client's new last stream number)."""
    params = list(_ORDER_VALUES(order))
    for i in _ORDER_JSON_AT:
        params[i] = _ORDER_COLUMNS[i].get_db_prep_save(params[i], connection)
    with connection.cursor() as cursor:
        cursor.execute(_order_insert_seen_sql(), [order.contract_id, contract_fingerprint, order.client_id,
                                                  settings.CCP_MAX_OPEN_ORDERS, *params, OrderState.RECEIVED, now,
                                                  order.client_id])
        return cursor.fetchone()


def _orders_announce(messages: list, orders: list[Order]) -> None:
    """Outside a transaction (the orders are committed): ``stream_messages_publish(messages)`` (their private-stream
    messages) and ``orders_validate_later(orders)`` with one Redis round trip less: the messages and the flags
    of their continuous contracts' matchers (``book_match_flag``) in one, then the matchers not queued already
    and the auction orders' validation queued as ``orders_queue`` does. Only when the channel layer is on
    REDIS_URL; else those two."""
    from ccp.book.tasks import book_match_flag

    continuous = sorted({o.contract_id for o in orders if o.contract.trading_mode == TradingMode.CONTINUOUS})
    flags = stream_send_with(messages, [functools.partial(book_match_flag, contract_id=c) for c in continuous])
    if flags is None:
        stream_messages_publish(messages)
        orders_validate_later(orders)
        return
    # a flag whose SET failed counts as set: the task is sent (Redis unreachable: always queued, as book_match_later)
    flagged = {contract_id: flag is not None for contract_id, flag in zip(continuous, flags, strict=True)}
    transaction.on_commit(functools.partial(orders_queue, orders, flagged=flagged), robust=True)  # runs now


def orders_validate_later(orders: list[Order]) -> None:
    """``orders_queue`` once the caller's transaction commits."""
    if orders:
        # robust: the orders are stored either way; the stale-order sweep re-queues them if the broker failed.
        transaction.on_commit(functools.partial(orders_queue, list(orders)), robust=True)


def orders_queue(orders: list[Order], *, flagged: Mapping[int, bool] | None = None) -> None:
    """Queue the handling of received orders: an auction contract's are validated (one task for one
    order, one for the others), a continuous contract's matched (a matcher task on its book queue, unless one
    is queued there: a run takes every order the queue's contracts have received by then, ``ccp.book.tasks``).
    ``flagged``: the continuous contracts' matcher flags as the caller set them (``book_match_flag``), true
    where it was set (the task is sent), instead of ``book_match_later``."""
    from ccp.book.tasks import book_match_later, book_match_send
    from ccp.orders.tasks import order_validate_task, orders_validate_task

    validate = [o.pk for o in orders if o.contract.trading_mode != TradingMode.CONTINUOUS]
    if len(validate) == 1:
        order_validate_task.delay(validate[0])
    elif validate:
        orders_validate_task.delay(validate)
    for contract_id in sorted({o.contract_id for o in orders if o.contract.trading_mode == TradingMode.CONTINUOUS}):
        if flagged is None:
            book_match_later(contract_id)
        elif flagged[contract_id]:
            book_match_send(contract_id)


@transaction.atomic
def order_validate(*, order_id: int, now: datetime) -> Order:
    """Accept a received order and lock its worst-case cost as order value, or reject it with a reason.

    Locks (in the order of ``ccp.locks``) the contract row (its book sequence), the order, then every
    fund lock of the client: a client's validations are serial, so its collateral is never
    over-committed and its accepted or partially filled orders never exceed CCP_MAX_OPEN_ORDERS.
    Idempotent: an order no longer 'received' is returned unchanged. After commit, a request waiting
    for the order's result is told to look again (``ccp.orders.results``).
    """
    now = require_aware(now)
    contract_id = Order.objects.filter(pk=order_id).values_list("contract_id", flat=True).get()
    contract = contract_lock(contract_id)
    order = order_lock(order_id)
    order.contract = contract
    order_results_signal([order_id], [order])  # as it is at the commit
    if order.state != OrderState.RECEIVED:
        return order
    if contract.trading_mode == TradingMode.CONTINUOUS:
        orders_validate_later([order])  # validated by the contract's matcher, with its matching
        return order
    violation = order_violation(order=order, contract=contract, now=now)
    if not violation:
        fund_lock = fund_locks_lock(client_ids=[order.client_id]).get((order.client_id, contract.collateral_id))
        if contract.is_perpetual:
            cost = order_value(contract.terms, order.side, order.price, order.quantity, leverage=order.leverage,
                               reduce_only=order.reduce_only)
        else:  # an auction order holds what it adds to its portfolio's worst case
            cost = order_value_netted(contract.terms, order.side, order.price, order.quantity,
                                      portfolio_legs(client_id=order.client_id, contract=contract))
        if open_orders_count(client_id=order.client_id, validated_only=True) >= settings.CCP_MAX_OPEN_ORDERS:
            violation = "too_many_open_orders"
        elif not collateral_covers(fund_lock, cost + (cross_unrealised_loss(  # a cross perpetual loss at the
                client_id=order.client_id, currency_id=contract.collateral_id) if cost else ZERO)):  # mark backs none
            violation = "insufficient_collateral"
    if violation:
        order_transition(order=order, new_state=OrderState.REJECTED, now=now, reason=violation)
        return order
    fund_lock.order_value += cost
    fund_lock.updated_at = now
    fund_lock.save(update_fields=["order_value", "updated_at"])
    order.order_value = cost
    order_transition(order=order, new_state=OrderState.ACCEPTED, now=now)
    balances_publish([fund_lock])
    book_level_changed(contract_id=contract.pk, side=order.side, price=order.price)
    return order


@transaction.atomic
def order_cancel(*, client: Client, order_id: int, now: datetime, reason: str = "") -> Order:
    """Cancel one of the client's open orders and release its order value.

    Locks (in the order of ``ccp.locks``) the pair's book (shared), the contract row, the order, then
    the fund lock. Another client's order is 'not found'. Cancelling an already cancelled order
    returns it unchanged; a filled, rejected or expired one is refused. An order held by a running
    auction is marked (``cancel_requested_at``) and cancelled when the auction is applied, for
    whatever quantity it leaves open.
    """
    now = require_aware(now)
    row = Order.objects.filter(pk=order_id, client=client).values_list("contract_id", "contract__pair_id").first()
    if row is None:
        raise NotFound("No such order.", code="order_not_found")
    contract_id, pair_id = row
    book_lock(pair_id, exclusive=False)
    contract = contract_lock(contract_id)
    order = order_lock(order_id)
    order.contract = contract
    if order.state == OrderState.CANCELLED:
        return order
    if order.state not in OPEN_STATES:
        raise Conflict(f"The order is {order.state} and cannot be cancelled.", code="order_not_open")
    if auction_holds(order):
        # A running auction holds the order: the cancel takes effect on what it leaves open.
        if order.cancel_requested_at is None:
            order.cancel_requested_at = order.updated_at = now
            order.save(update_fields=["cancel_requested_at", "updated_at"])
            client_stream_publish(order.client_id, _order_event(order))
        return order
    was_on_book = order.state in BOOK_STATES
    order.modify_price = order.modify_quantity = order.modify_requested_at = None  # a queued modify is moot
    if order.order_value:
        key = (order.client_id, contract.collateral_id)
        fund_lock = fund_locks_lock(keys=[key])[key]
        fund_lock.order_value -= order.order_value
        fund_lock.updated_at = now
        fund_lock.save(update_fields=["order_value", "updated_at"])
        order.order_value = ZERO
        balances_publish([fund_lock])
    order_transition(order=order, new_state=OrderState.CANCELLED, now=now, reason=reason)
    if contract.trading_mode == TradingMode.CONTINUOUS:
        books_touched([contract.pk])
    if was_on_book:
        book_level_changed(contract_id=order.contract_id, side=order.side, price=order.price)
    return order


def orders_cancel_open(*, contract: Contract, now: datetime, reason: str) -> list[Order]:
    """Cancel every open order of a contract (``orders_cancel``). The caller holds the pair's book lock
    and the contract row (``ccp.locks``); this locks the orders, then their fund locks."""
    orders = orders_lock(Order.objects.filter(contract=contract, state__in=OPEN_STATES))
    for order in orders:
        order.contract = contract
    return orders_cancel(orders=orders, now=now, reason=reason)


@transaction.atomic
def orders_cancel_all(*, client: Client, now: datetime, contract: Contract | None = None,
                      side: str | None = None) -> list[Order]:
    """Cancel the client's open orders, of one contract or all, of one side or both (``orders_cancel``).
    Locks (``ccp.locks``) the pairs' books (shared), the contracts, the orders, their fund locks."""
    now = require_aware(now)
    mine = Order.objects.filter(client=client, state__in=OPEN_STATES)
    if contract is not None:
        mine = mine.filter(contract=contract)
    if side is not None:
        mine = mine.filter(side=side)
    for pair_id in sorted(set(mine.values_list("contract__pair_id", flat=True))):
        book_lock(pair_id, exclusive=False)
    contracts = contracts_lock(Contract.objects.filter(pk__in=mine.values("contract_id")).select_related("pair"))
    orders = orders_lock(mine.filter(contract_id__in=contracts))
    for order in orders:
        order.contract = contracts[order.contract_id]
    return orders_cancel(orders=orders, now=now, reason="cancel_all")


def orders_cancel(*, orders: list[Order], now: datetime, reason: str) -> list[Order]:
    """Cancel open orders (locked, with their contract set) in a few statements, whatever their number:
    states and history rows in bulk, order value released with one fund lock adjustment, one book sequence
    bump per contract, order events after commit. An order a running auction holds is marked
    ``cancel_requested_at`` instead (cancelled when the auction is applied). Returns the orders changed."""
    held: set[int] = set()
    by_pair: dict[int, list[Order]] = defaultdict(list)
    for order in orders:
        by_pair[order.contract.pair_id].append(order)
    for pair_orders in by_pair.values():
        held |= auction_held_order_ids(pair=pair_orders[0].contract.pair, order_ids=[o.pk for o in pair_orders])
    changed, histories = [], []
    levels: dict[int, set] = defaultdict(set)
    released: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for order in orders:
        if order.pk in held:
            if order.cancel_requested_at is None:
                order.cancel_requested_at = order.updated_at = now
                changed.append(order)
            continue
        histories.append(OrderStateHistory(order_id=order.pk, from_state=order.state, to_state=OrderState.CANCELLED,
                                           reason=reason, filled_quantity=order.filled_quantity, at=now))
        if order.state in BOOK_STATES:
            levels[order.contract_id].add((order.side, order.price))
        if order.order_value:
            released[(order.client_id, order.contract.collateral_id)] -= order.order_value
        order.state, order.order_value, order.updated_at = OrderState.CANCELLED, ZERO, now
        order.modify_price = order.modify_quantity = order.modify_requested_at = None
        changed.append(order)
    bulk_update_rows(Order, changed, ["state", "order_value", "cancel_requested_at", "modify_price", "modify_quantity",
                                      "modify_requested_at", "updated_at"])
    bulk_insert_rows(OrderStateHistory, histories)
    if released:
        balances_publish(fund_locks_adjust(settle_value={}, order_value=released, lockup_value={}, now=now).values())
    client_stream_publish_many((order.client_id, _order_event(order)) for order in changed)
    books_touched({o.contract_id for o in changed if o.contract.trading_mode == TradingMode.CONTINUOUS})
    books_levels_changed(levels=levels)
    return changed
