"""Database helpers for the bulk paths (auctions, expiry): one statement for many rows."""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from psycopg.adapt import Dumper, PyFormat


@functools.cache
def _times_once(plain: type[Dumper]) -> type[Dumper]:
    """``plain`` (the connection's text dumper of datetimes) with each distinct value formatted once: a bulk
    write's rows share one or a few times (the booking's ``now``), and formatting a timestamp for COPY cost
    1.5 to 3 us, more than the rest of most rows (an auction copies a hundred thousand). The same text."""

    class TimesOnce(Dumper):
        def __init__(self, cls: type, context=None) -> None:
            super().__init__(cls, context)
            self._plain = plain(cls, context)
            self.oid = self._plain.oid
            self._texts: dict[datetime, bytes] = {}

        def dump(self, obj: datetime) -> bytes:
            text = self._texts.get(obj)
            if text is None:
                text = self._texts[obj] = bytes(self._plain.upgrade(obj, PyFormat.TEXT).dump(obj))
            return text

    return TimesOnce


def _copy(cursor, table: str, fields: Sequence[models.Field], rows: Sequence[models.Model | dict]) -> None:
    """COPY ``rows`` (model instances, or dicts by attribute name: cheaper to build in bulk) into
    ``table``'s columns of ``fields``."""
    columns = ", ".join(f'"{f.column}"' for f in fields)
    names = [f.attname for f in fields]
    # One C-level getter per kind of row: an auction copies a hundred thousand rows.
    by_key, by_attribute = operator.itemgetter(*names), operator.attrgetter(*names)
    if len(names) == 1:
        by_key, by_attribute = (lambda row: (row[names[0]],)), (lambda row: (getattr(row, names[0]),))
    adapters = cursor.cursor.adapters  # this cursor's only
    adapters.register_dumper(datetime, _times_once(adapters.get_dumper(datetime, PyFormat.TEXT)))
    with cursor.cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(by_key(row) if isinstance(row, dict) else by_attribute(row))


@functools.cache
def _db_type(field: models.Field) -> str:
    """A field's column type (``Field.db_type`` builds it from the backend's templates at every call)."""
    return field.db_type(connection)


def _stage(cursor, table: str, fields: Sequence[models.Field], rows: Sequence[models.Model | dict]) -> None:
    """A temporary ``table`` with the columns of ``fields`` (dropped at commit at the latest), filled
    by COPY."""
    definition = ", ".join(f'"{f.column}" {_db_type(f)}' for f in fields)
    cursor.execute(f'CREATE TEMPORARY TABLE "{table}" ({definition}) ON COMMIT DROP')
    _copy(cursor, table, fields, rows)


def text_array(values: Iterable[str]) -> str:
    """Strings as an array literal, each quoted (``{"a","b"}``), for a parameter cast to ``text[]``: psycopg's
    list dumper converts element by element in Python (0.8 us each); an auction's apply sends hundreds of
    thousands."""
    values = values if isinstance(values, list) else list(values)
    if not values:
        return "{}"
    plain = "".join(values)
    if '"' not in plain and "\\" not in plain:  # nothing to escape (choices, reasons): one join, no call per value
        return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def number_array(values: Iterable[int | Decimal | None]) -> str:
    """Integers or decimals (None as NULL) as an array literal (``{1,2,3}``), for a parameter cast to a numeric
    or integer array (ids: ``bigint[]``): what psycopg sends for each (``str``), without its list dumper's cost
    per element (0.6 us each, 0.12 us this way). Finite values only (a NaN or an infinity is no amount); a bool
    or a fraction in an integer array: PostgreSQL refuses it."""
    # ``str`` of each at C speed; None's text ("None") is no number's, so it is replaced after the join.
    return "{" + ",".join(map(str, values)).replace("None", "NULL") + "}"


_INTEGERS, _DECIMALS = ({int}, {int, type(None)}), ({Decimal}, {Decimal, type(None)})
_NONE = type(None)


def _array_param(field: models.Field, values: list) -> list | str:
    """A column's values as the parameter of its array: a literal (``text_array``, ``number_array``, booleans,
    aware datetimes, or only NULLs) when they are all of the column's plain kind (strings of a text column, str
    subclasses such as choices included, integers of an integer or numeric one, finite decimals of a numeric
    one, bools of a boolean one, aware datetimes of a timestamptz one: what psycopg would send, read as the
    same values), else the list for psycopg to dump (0.6 us a value)."""
    return _array_literal(_array_kind(field), values)


_ONLY_NONE = {_NONE}


def _array_literal(kind: str | None, values: list) -> list | str:
    """``_array_param`` of a column whose ``_array_kind`` is ``kind``."""
    kinds = set(map(type, values))
    if kinds == _ONLY_NONE:  # a column nobody sets (a new order's fill and trigger columns): NULL in any type
        return "{" + ",".join(["NULL"] * len(values)) + "}"
    if kind is None:
        return values
    if kind == "text":
        return text_array(values) if all(issubclass(k, str) for k in kinds) else values
    if kind == "boolean":
        return "{" + ",".join("NULL" if v is None else "t" if v else "f" for v in values) + "}" if (
            kinds <= {bool, _NONE}) else values
    if kind == "timestamptz":
        # Each distinct instant formatted once (a write's rows share one or a few: the booking's ``now``).
        distinct = set(values)
        if not (kinds <= {datetime, _NONE} and all(v is None or v.utcoffset() is not None for v in distinct)):
            return values
        texts = {v: "NULL" if v is None else f'"{v.isoformat()}"' for v in distinct}
        return "{" + ",".join(map(texts.__getitem__, values)) + "}"
    if kinds in _INTEGERS:
        return number_array(values)
    if kind == "numeric" and kinds in _DECIMALS:
        text = ",".join(map(str, values))
        # Not finite: "NaN", "sNaN", "Infinity" (a finite decimal's text has digits, a sign, a point, an "E").
        return values if "a" in text or "I" in text else "{" + text.replace("None", "NULL") + "}"
    return values


@functools.cache
def _array_kind(field: models.Field) -> str | None:
    """"text", "integer", "numeric", "boolean" or "timestamptz": which literal ``_array_param`` may send for
    the field's column."""
    kind = _db_type(field).partition("(")[0]
    if kind in ("varchar", "text"):
        return "text"
    if kind in ("boolean", "timestamp with time zone"):
        return "boolean" if kind == "boolean" else "timestamptz"
    return "integer" if kind in ("integer", "bigint", "smallint") else "numeric" if kind == "numeric" else None


def jit_off() -> None:
    """No JIT compilation for the rest of the caller's transaction. PostgreSQL compiles a statement whose
    estimated cost passes ``jit_above_cost``, which a bulk statement over a large book does: an auction
    apply's book levels statement spent 0.47 of its 0.56 s compiling (auto_explain, 100,000 orders) to run
    for 0.09 s. JIT pays off for long analytic queries only; these statements run once each."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")


def times_loaded_in_c(cursor) -> None:
    """Load the timestamptz columns this (Django) cursor reads with psycopg's C loader. Django's is psycopg's
    pure-Python one, which then sets the connection's time zone (2 to 4 us a value: a third of reading an
    auction's order rows); PostgreSQL's text carries the offset, so the C loader gives the same instants
    (aware, in UTC as Django's session is)."""
    oid = psycopg.adapters.types["timestamptz"].oid
    cursor.cursor.adapters.register_loader(oid, psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT))


# Up to this many rows, the bulk paths send one statement with one array per column (``unnest``): a
# temporary table costs four round trips and catalog writes, which dominate a matcher's small batch.
FEW_ROWS = 1000
# Up to this many rows, ``bulk_insert_rows`` sends one INSERT from ``unnest_source`` (one prepared statement, one
# round trip) rather than a COPY (two round trips, parsed and planned each time).
FEW_INSERTS = 100


def unnest_source(fields: Sequence[models.Field], rows: Sequence[models.Model | dict], *,
                  ordinality: bool = False) -> tuple[str, list[list]]:
    """``unnest(%s::type[], ...) AS v(columns)`` over ``rows``' values of ``fields``, and its parameters: one
    parameter per column whatever the number of rows (a VALUES list has one per value, which the driver
    splits and converts one by one), an array literal where the column's values allow (``_array_param``)."""
    names = [f.attname for f in fields]
    # One C-level getter of a row's values (a tuple), then one transposition into columns.
    by_key, by_attribute = operator.itemgetter(*names), operator.attrgetter(*names)
    if len(names) == 1:
        by_key, by_attribute = (lambda row: (row[names[0]],)), (lambda row: (getattr(row, names[0]),))
    dicts = isinstance(rows[0], dict)
    if all(isinstance(row, dict) == dicts for row in rows):
        values = map(by_key if dicts else by_attribute, rows)
    else:  # instances and dicts mixed
        values = (by_key(row) if isinstance(row, dict) else by_attribute(row) for row in rows)
    kinds, source, numbered = _unnest_shape(fields)
    columns = [_array_literal(kind, list(column))
               for kind, column in zip(kinds, zip(*values, strict=True), strict=True)]
    return numbered if ordinality else source, columns


# ``_unnest_shape`` by the fields' ids (a field's own hash is Python code, a tuple of ints' is not), with the fields
# themselves kept in the value: none is collected, so no other object takes its id.
_SHAPES: dict[tuple[int, ...], tuple[tuple, list, str, str]] = {}


def _unnest_shape(fields: Sequence[models.Field]) -> tuple[list, str, str]:
    """What ``unnest_source`` sends for these fields whatever the rows, worked out once: each column's
    ``_array_kind``, and the source without and with ordinality."""
    shape = _SHAPES.get(key := tuple(map(id, fields)))
    if shape is None:
        arrays = ", ".join(f"%s::{_db_type(f)}[]" for f in fields)
        names = ", ".join(f'"{f.column}"' for f in fields)
        shape = _SHAPES[key] = (tuple(fields), [_array_kind(f) for f in fields], f"unnest({arrays}) AS v({names})",
                                f"unnest({arrays}) WITH ORDINALITY AS v({names}, n)")
    return shape[1:]


def bulk_update_rows(model: type[models.Model], objects: Sequence[models.Model | dict],
                     fields: Sequence[str]) -> None:
    """Update many rows by primary key. Up to ``FEW_ROWS`` rows: one UPDATE ... FROM unnest of one array
    per column. More: COPY the new values into a temporary table, then one UPDATE ... FROM it. Django's
    bulk_update builds a CASE per field and row, which grows with the batch; a VALUES list with a
    parameter per value spends its time converting parameters. Rows are objects with the model's
    attributes or dicts by attribute name; plain column types only (values go to PostgreSQL as they
    are)."""
    if not objects:
        return
    if len(objects) <= FEW_ROWS:
        writes_send([bulk_update_write(model, objects, fields)])
        return
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    assignments = ", ".join(f'"{c.column}" = v."{c.column}"' for c in columns[1:])
    where = f'WHERE t."{meta.pk.column}" = v."{meta.pk.column}"'
    with connection.cursor() as cursor:
        _stage(cursor, "ccp_bulk_update", columns, objects)
        cursor.execute(f'UPDATE "{meta.db_table}" AS t SET {assignments} FROM ccp_bulk_update AS v {where}')
        cursor.execute("DROP TABLE ccp_bulk_update")


class Write(NamedTuple):
    """A statement that writes ``table`` and returns nothing, not sent yet (``writes_send``)."""

    table: str
    sql: str
    params: list


def bulk_update_write(model: type[models.Model], objects: Sequence[models.Model | dict],
                      fields: Sequence[str]) -> Write:
    """``bulk_update_rows``' statement for up to ``FEW_ROWS`` rows (at least one), not sent."""
    columns, table, sql = _update_shape(model, tuple(fields))
    source, params = unnest_source(columns, objects)
    return Write(table, sql.format(source=source), params)


@functools.cache
def _update_shape(model: type[models.Model], fields: tuple[str, ...]) -> tuple[list, str, str]:
    """``bulk_update_write``'s columns (the primary key first), table and statement (``{source}`` left to fill)."""
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    assignments = ", ".join(f'"{c.column}" = v."{c.column}"' for c in columns[1:])
    return columns, meta.db_table, (f'UPDATE "{meta.db_table}" AS t SET {assignments} FROM {{source}} '
                                    f'WHERE t."{meta.pk.column}" = v."{meta.pk.column}"')


def bulk_insert_write(model: type[models.Model], objects: Sequence[models.Model | dict], *,
                      with_pk: bool = False) -> Write:
    """``bulk_insert_rows``' INSERT from ``unnest_source`` (rows inserted, and numbered by the id sequence, in
    their order) for up to ``FEW_ROWS`` rows (at least one), not sent."""
    fields, table, sql = _insert_shape(model, with_pk)
    source, params = unnest_source(fields, objects, ordinality=True)
    return Write(table, sql.format(source=source), params)


@functools.cache
def _insert_shape(model: type[models.Model], with_pk: bool) -> tuple[list, str, str]:
    """``bulk_insert_write``'s fields, table and statement (``{source}`` left to fill)."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if with_pk or not f.primary_key]
    names = ", ".join(f'"{f.column}"' for f in fields)
    return fields, meta.db_table, f'INSERT INTO "{meta.db_table}" ({names}) SELECT {names} FROM {{source}} ORDER BY v.n'


def writes_send(writes: Sequence[Write]) -> None:
    """Writes in one statement, one round trip: each but the last in the WITH clause of the last. They run on
    one snapshot and in no set order (an id sequence numbers their rows in any order): at most one per table,
    each writing rows none of the others reads or writes, none waiting for a lock (orders the caller holds
    updated, their history rows and trades inserted: a foreign key's check runs at the end of the statement,
    after all of them)."""
    *first, last = writes
    with connection.cursor() as cursor:
        cursor.execute(*writes_with(first, last.sql, last.params, tables={last.table}))


def writes_with(writes: Sequence[Write], sql: str, params: list, *, tables: Collection[str] = ()
                ) -> tuple[str, list]:
    """(SQL, parameters) of a statement (positional parameters) with ``writes`` before it in its WITH clause, as
    ``writes_send`` sends them: on its snapshot, in no set order with it (``tables``: those it writes)."""
    names = [w.table for w in writes]
    assert len({*names, *tables}) == len(names) + len(tables), "one write per table in a statement"
    if not writes:
        return sql, params
    parts = ", ".join(f"w{n} AS ({w.sql})" for n, w in enumerate(writes))
    sql = sql.lstrip()
    sql = f"WITH {parts}, {sql[5:]}" if sql[:5].upper() == "WITH " else f"WITH {parts} {sql}"
    return sql, [*(p for w in writes for p in w.params), *params]


def bulk_upsert_rows(model: type[models.Model], rows: Sequence[dict], *, key: Sequence[str],
                     add: Sequence[str] = (), replace: Sequence[str] = ()) -> None:
    """Insert rows (dicts by attribute name, every concrete column but the primary key), or where a
    row with the same ``key`` (a unique constraint) exists, add to its ``add`` columns and overwrite
    its ``replace`` columns: one INSERT ... ON CONFLICT in key order, so concurrent writers lock rows
    in the same order, from an unnest of one array per column (up to ``FEW_ROWS`` rows) or from a
    temporary table filled by COPY."""
    if not rows:
        return
    if len(rows) <= FEW_ROWS:
        writes_send([bulk_upsert_write(model, rows, key=key, add=add, replace=replace)])
        return
    meta = model._meta
    fields, names, conflict = _upsert_shape(model, key, add, replace)
    with connection.cursor() as cursor:
        _stage(cursor, "ccp_bulk_upsert", fields, rows)
        cursor.execute(f'INSERT INTO "{meta.db_table}" AS t ({names}) SELECT {names} FROM ccp_bulk_upsert {conflict}')
        cursor.execute("DROP TABLE ccp_bulk_upsert")


def bulk_upsert_write(model: type[models.Model], rows: Sequence[dict], *, key: Sequence[str],
                      add: Sequence[str] = (), replace: Sequence[str] = ()) -> Write:
    """``bulk_upsert_rows`` of up to ``FEW_ROWS`` rows (at least one) as a statement not sent (``Behind.write``)."""
    fields, names, conflict = _upsert_shape(model, key, add, replace)
    source, params = unnest_source(fields, rows)
    table = model._meta.db_table
    return Write(table, f'INSERT INTO "{table}" AS t ({names}) SELECT {names} FROM {source} {conflict}', params)


def _upsert_shape(model: type[models.Model], key: Sequence[str], add: Sequence[str], replace: Sequence[str]
                  ) -> tuple[list, str, str]:
    """(the columns, their names, the ORDER BY ... ON CONFLICT clause) of ``bulk_upsert_rows``."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    column = {f.attname: f'"{f.column}"' for f in fields}
    keys = ", ".join(column[name] for name in key)
    updates = ", ".join([*(f"{column[n]} = t.{column[n]} + EXCLUDED.{column[n]}" for n in add),
                         *(f"{column[n]} = EXCLUDED.{column[n]}" for n in replace)])
    return fields, ", ".join(column.values()), f"ORDER BY {keys} ON CONFLICT ({keys}) DO UPDATE SET {updates}"


def upsert_write(model: type[models.Model], rows: Sequence[dict], *, key: Sequence[str],
                 merge: Mapping[str, str]) -> Write:
    """Insert a handful of rows (dicts by attribute name, every concrete column but the primary key, at least
    one) in one INSERT ... SELECT FROM ``unnest_source`` ... ON CONFLICT statement, in key order; where a row
    with the same ``key`` (a unique constraint) exists, set each column named in ``merge`` to its SQL expression
    over the stored row ``t`` and the new one ``EXCLUDED`` (columns quoted: ``GREATEST(t."high",
    EXCLUDED."high")``): the statement, not sent (``writes_send``). No temporary table, unlike
    ``bulk_upsert_rows``: for a few rows per transaction. One parameter per column (a VALUES list had one per
    value, each converted by its field, and a statement text per number of rows, each prepared and planned
    apart)."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    column = {f.attname: f'"{f.column}"' for f in fields}
    names = ", ".join(column.values())
    keys = ", ".join(column[name] for name in key)
    updates = ", ".join(f"{column[name]} = {expression}" for name, expression in merge.items())
    source, params = unnest_source(fields, rows)
    return Write(meta.db_table, f'INSERT INTO "{meta.db_table}" AS t ({names}) SELECT {names} FROM {source} '
                                f"ORDER BY {keys} ON CONFLICT ({keys}) DO UPDATE SET {updates}", params)


def ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """``count`` new primary keys from the model's id sequence (one statement), so rows inserted by COPY
    (which returns nothing) have ids known before the insert."""
    if count <= 0:
        return []
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [meta.db_table, meta.pk.column, count])
        return [row[0] for row in cursor.fetchall()]


def bulk_insert_rows(model: type[models.Model], objects: Sequence[models.Model | dict], *,
                     with_pk: bool = False) -> None:
    """INSERT many rows with COPY (several times faster than multi-row INSERT); ids are not returned,
    so use it for rows nobody reads back in the same transaction (history, journal lines). Rows are
    model instances or dicts by attribute name (cheaper to build in bulk). Plain column types only
    (values go to PostgreSQL as they are). ``with_pk``: the rows carry their ids (``ids_reserve``)."""
    if not objects:
        return
    if len(objects) <= FEW_INSERTS:
        writes_send([bulk_insert_write(model, objects, with_pk=with_pk)])
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if with_pk or not f.primary_key]
    with connection.cursor() as cursor:
        _copy(cursor, meta.db_table, fields, objects)


class Columns:
    """A model's concrete columns read by plain SQL and turned into instances as the ORM does (``from_db``
    after the fields' database converters): the hot paths (the matcher's locks, order entry's reads) skip
    compiling a queryset, which cost a small batch or a single order more than its SQL. ``Columns.of(Model)``
    is built once per model."""

    def __init__(self, model: type[Model]):
        fields = model._meta.concrete_fields
        self.model, self.columns, self.attnames = model, [f.column for f in fields], [f.attname for f in fields]
        cols = [f.get_col(model._meta.db_table) for f in fields]
        self.converters = [(i, [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)], col)
                           for i, col in enumerate(cols)]
        self.converters = [(i, found, col) for i, found, col in self.converters if found]
        self.plain = _plain_init(model)

    @staticmethod
    @functools.cache
    def of(model: type[Model]) -> Columns:
        return Columns(model)

    def select(self, alias: str) -> str:
        return ", ".join(f'{alias}."{column}"' for column in self.columns)

    def instance(self, row: tuple) -> Model:
        if self.converters:
            row = list(row)
            for i, converters, col in self.converters:
                for converter in converters:
                    row[i] = converter(row[i], col, connection)
        if not self.plain or pre_init.receivers or post_init.receivers:
            return self.model.from_db(connection.alias, self.attnames, row)
        # What from_db leaves, without Model.__init__'s signals and setattr per field (5.9 -> 1.7 us an order)
        return self._built(row, adding=False, db=connection.alias)

    def new(self, values: Sequence) -> Model:
        """``Model(*values)``: a new instance (not stored) with every column's value, in column order."""
        if not self.plain or pre_init.receivers or post_init.receivers:
            return self.model(*values)
        return self._built(values, adding=True, db=None)

    def _built(self, values: Sequence, *, adding: bool, db: str | None) -> Model:
        instance = self.model.__new__(self.model)
        state = ModelState()
        state.adding, state.db = adding, db
        instance.__dict__["_state"] = state
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        return instance


def _plain_init(model: type[Model]) -> bool:
    """Whether ``model.from_db`` of a whole row only sets each column's attribute in the instance's ``__dict__``
    (with its ModelState), as when neither it nor ``__init__`` is overridden (nor extended by a base class that
    ``Model.__init__``'s ``super().__init__()`` reaches) and each column's attribute is Django's plain one (a
    foreign key's id: nothing cached on a new instance to drop); the init signals' receivers are checked at each
    instance."""
    def attribute(name: str):
        return next((klass.__dict__[name] for klass in model.__mro__ if name in klass.__dict__), None)

    return (all("__init__" not in klass.__dict__ for klass in model.__mro__ if klass not in (Model, object))
            and model.from_db.__func__ is Model.from_db.__func__
            and all(type(attribute(f.attname)) in (DeferredAttribute, ForeignKeyDeferredAttribute)
                    for f in model._meta.concrete_fields))


@contextmanager
def one_round_trip() -> Iterator[None]:
    """The statements run in the block (``Sent``) go to PostgreSQL together at its end, in one round trip (psycopg's
    pipeline mode; when they are the transaction's first, psycopg sends its BEGIN apart): each its own statement,
    run after the one before it ended, on its own snapshot (it sees what an earlier one's lock wait let commit), so
    they lock and read as sent one by one, a round trip each (about 0.5 to 1 ms of a matcher run on a loaded host,
    against about 25 us of psycopg's CPU per statement in the block). Their
    rows are read after the block (``Sent.result``); a statement whose rows are read in the block costs a round
    trip there. An error is raised at the end of the block as Django's (the statements after it do not run, and
    the transaction is failed as after any error). Inside another one, its statements join the outer one's.
    Never around a COPY (``bulk_insert_rows`` of many rows): psycopg refuses it there."""
    connection.ensure_connection()
    if connection.connection.pgconn.pipeline_status:  # in one already: the statements go with its own
        yield
        return
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


@contextmanager
def one_round_trip_after(behind: Behind | None) -> Iterator[None]:
    """``one_round_trip`` for statements that must come after ``behind``'s writes: a thread's are waited for
    before it (psycopg's pipeline cannot start while the thread uses the connection), those held go first in it."""
    if behind is not None and behind.threaded:
        behind.wait()
    with one_round_trip():
        if behind is not None:
            behind.wait()
        yield


class Sent:
    """One statement that returns rows, sent on the caller's connection (in ``one_round_trip``: queued), its rows
    given to ``parse`` when asked for (``result``). ``times_in_c``: ``times_loaded_in_c``."""

    def __init__(self, sql: str, params: Sequence | Mapping, parse: Callable[[list[tuple]], object] = list, *,
                 times_in_c: bool = False) -> None:
        self._parse = parse
        self._cursor = connection.cursor()
        if times_in_c:
            times_loaded_in_c(self._cursor)
        self._cursor.execute(sql, params)

    def result(self):
        with self._cursor as cursor:  # a statement that returns rows (psycopg builds ``description`` at each read)
            return self._parse(cursor.fetchall())


class Beside:
    """One statement run on a second connection, on a thread, while the caller's transaction goes on:
    PostgreSQL works on it on another core as the caller computes. For writes to rows the caller's
    transaction neither holds nor waits for (the caller sees to it). The caller reads the rows it
    returns (``rows``) and ``commit``s it just before its own transaction commits; leaving the ``with``
    block without that rolls it back (also when the caller fails first).

    The second connection never waits for a row lock (``lock_timeout`` of ``LOCK_WAIT_MS``): the caller,
    waiting for its rows, would wait for it outside PostgreSQL's sight, where no deadlock detector looks.
    When a lock is held elsewhere (an order row another transaction holds, say), the statement is rolled
    back there and runs on the caller's connection instead, as part of its transaction.

    Only when the caller's transaction is the outermost one: a second connection sees committed rows
    only, not those of an enclosing transaction (a test's). Inside one, the statement runs at once on the
    caller's connection."""

    LOCK_WAIT_MS = 200

    def __init__(self, sql: str, params: Sequence) -> None:
        self._connection = self._pool = None
        self._statement = (sql, params)
        if len(connection.atomic_blocks) > 1:
            self._rows = _done(self._here())
            return
        self._connection = psycopg.connect(**connection.get_connection_params())
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside")
        self._rows = self._pool.submit(self._run)

    def _here(self) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(*self._statement)
            return cursor.fetchall() if cursor.description else []

    def _run(self) -> list[tuple]:
        with self._connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {int(self.LOCK_WAIT_MS)}")
            cursor.execute("SET LOCAL jit = off")  # as ``jit_off``: a bulk statement, run once
            cursor.execute(*self._statement)
            return cursor.fetchall() if cursor.description else []

    def rows(self) -> list[tuple]:
        try:
            return self._rows.result()
        except psycopg.errors.LockNotAvailable:
            self.close()  # rolled back there
            self._connection = self._pool = None
            self._rows = _done(self._here())
            return self._rows.result()

    def commit(self) -> None:
        self.rows()
        if self._connection is not None:
            self._connection.commit()
        self.close()

    def close(self) -> None:
        """Roll back what is not committed and let the connection go (after the statement ends)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._connection.close()

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, *_) -> None:
        self.close()


class Behind:
    """Writes of the caller's own transaction, on its own connection, run in order by a thread while the
    caller goes on computing: PostgreSQL works on another core (an auction's tens of thousands of order
    updates and trades) as Python builds what comes next. Every statement stays in the caller's transaction
    and in the order of the whole: the caller queues (``run``) and does not touch the database itself until
    ``wait`` (leaving the ``with`` block waits too), so nothing of its own runs in between. ``wait`` returns
    the works' results in order and raises the first one's error (the caller's transaction then fails and
    rolls back whole). With ``threaded`` false each work runs at once in the caller's thread (small batches:
    a thread costs more than it saves)."""

    def __init__(self, *, threaded: bool = True) -> None:
        self._pending: list[Future] = []
        # ``write``s held (not threaded), in order: each list one statement, all in one round trip; the last one
        # open to more writes unless ``_closed`` (a write ``alone``)
        self._writes: list[list[Write]] = []
        self._closed = False
        self._pool = self._wrapper = None
        self._failed = False
        if threaded:
            self._wrapper = connections[DEFAULT_DB_ALIAS]
            self._wrapper.inc_thread_sharing()  # the thread uses the caller's connection, not one of its own
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="behind")

    @property
    def threaded(self) -> bool:
        return self._pool is not None

    def run(self, work: Callable[[], object]) -> None:
        """Queue ``work`` (database writes through ``ccp.db`` or the ORM, on the caller's connection)."""
        if self._pool is None:
            self._send()
            self._pending.append(_done(work()))
        else:
            self._pending.append(self._pool.submit(self._run, work))

    def write(self, write: Write, *, alone: bool = False) -> None:
        """Queue one ``Write``. Not threaded, it is held and sent with the writes queued after it, in one statement
        (``writes_send``; a second write of its table starts the next statement), when the caller next runs a work
        or waits: a round trip for them all (a matcher's trades, candles, orders, history rows and cash
        movements). ``alone``: in a statement of its own (an upsert that may wait for a row lock: a statement's
        other writes, or the one the caller sends them with, take none), still in that round trip."""
        if self._pool is not None:
            self.run(functools.partial(writes_send, [write]))
            return
        last = self._writes[-1] if self._writes else None
        if alone or last is None or self._closed or any(held.table == write.table for held in last):
            self._writes.append([write])
        else:
            last.append(write)
        self._closed = alone

    def _send(self) -> None:
        """The writes held, in one round trip (``one_round_trip``: the caller's when it is in one)."""
        statements, self._writes, self._closed = self._writes, [], False
        with one_round_trip() if len(statements) > 1 else contextlib.nullcontext():
            for writes in statements:
                writes_send(writes)

    def held_apart(self) -> bool:
        """Whether ``held_take`` will send statements (the caller's next statement is then best sent in a
        ``one_round_trip`` with them: for one statement alone, pipeline mode costs more than it saves)."""
        return len(self._writes) > 1 or (bool(self._writes) and self._closed)

    def held_take(self) -> list[Write]:
        """The last writes held (``write``), taken back: the caller sends them in its next statement (``writes_with``),
        before it runs or reads anything else. Those held before them (a write ``alone``, a second write of a table)
        are sent here: in the caller's round trip when it is in a ``one_round_trip``."""
        if not self._writes or self._closed:
            self._send()
            return []
        *before, last = self._writes
        self._writes = before
        self._send()
        return last

    def _run(self, work: Callable[[], object]) -> object:
        if self._failed:
            return None  # the transaction failed already: the caller gets the first error
        connections[DEFAULT_DB_ALIAS] = self._wrapper
        try:
            return work()
        except BaseException:
            self._failed = True
            raise
        finally:
            del connections[DEFAULT_DB_ALIAS]

    def wait(self) -> list:
        """The queued works' results, in order, once all ran; the first error, if one failed."""
        self._send()
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()  # every work ends before the caller goes on, failed or not
        return [future.result() for future in pending]

    def close(self) -> None:
        """Wait for the works (their results and errors left unread) and let the thread go."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._wrapper.dec_thread_sharing()
            self._pool = None

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, kind, *_) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self.close()


def write_behind(behind: Behind | None, work: Callable[[], object]) -> None:
    """``work`` queued on the caller's ``behind``, or run at once without one."""
    if behind is None:
        work()
    else:
        behind.run(work)


def upsert_behind(behind: Behind | None, model: type[models.Model], rows: Sequence[dict], *, key: Sequence[str],
                  replace: Sequence[str]) -> None:
    """``bulk_upsert_rows`` queued on the caller's ``behind`` (or run at once without one): held (``Behind.write``
    ``alone``: in a statement of its own, sent in the round trip of the next ones) when it has no thread and the
    rows are few."""
    if not rows:
        return
    if behind is not None and not behind.threaded and len(rows) <= FEW_ROWS:
        behind.write(bulk_upsert_write(model, rows, key=key, replace=replace), alone=True)
    else:
        write_behind(behind, functools.partial(bulk_upsert_rows, model, rows, key=key, replace=replace))


def write_held(behind: Behind | None, write: Write, *, alone: bool = False) -> None:
    """``write`` queued on the caller's ``behind`` (``Behind.write``), or sent at once without one."""
    if behind is None:
        writes_send([write])
    else:
        behind.write(write, alone=alone)


def _done(rows: list[tuple]) -> Future:
    future: Future = Future()
    future.set_result(rows)
    return future
