"""Database helpers for the bulk paths (auctions, expiry): one statement for many rows."""

from collections.abc import Sequence

from django.db import connection, models


def bulk_update_rows(model: type[models.Model], objects: Sequence[models.Model], fields: Sequence[str],
                     batch_size: int = 5000) -> None:
    """UPDATE ... FROM (VALUES ...) by primary key: Django's bulk_update builds a CASE per field and
    row, which grows with the batch and dominated auctions of many orders."""
    if not objects:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    casts = [f"%s::{column.db_type(connection)}" for column in columns]
    assignments = ", ".join(f'"{c.column}" = v."{c.column}"' for c in columns)
    names = ", ".join(f'"{c.column}"' for c in columns)
    with connection.cursor() as cursor:
        for start in range(0, len(objects), batch_size):
            chunk = objects[start:start + batch_size]
            values = ", ".join(f"(%s::bigint, {', '.join(casts)})" for _ in chunk)
            params = []
            for obj in chunk:
                params.append(obj.pk)
                params.extend(column.get_db_prep_save(getattr(obj, column.attname), connection)
                              for column in columns)
            cursor.execute(f'UPDATE "{meta.db_table}" AS t SET {assignments} FROM (VALUES {values}) '
                           f'AS v(id, {names}) WHERE t."{meta.pk.column}" = v.id', params)


_BOOK_LOCK = 7001  # advisory lock namespace: a pair's book


def book_lock(pair_id: int, *, exclusive: bool) -> None:
    """Transaction-scoped lock on a pair's book: an auction's snapshot takes it exclusively, cancels
    share it, so a cancel lands either before the snapshot or as a cancel request after it."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_BOOK_LOCK, pair_id])


def bulk_insert_rows(model: type[models.Model], objects: Sequence[models.Model]) -> None:
    """INSERT many rows with COPY (several times faster than multi-row INSERT); ids are not returned,
    so use it for rows nobody reads back in the same transaction (history, journal lines)."""
    if not objects:
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    names = ", ".join(f'"{f.column}"' for f in fields)
    with connection.cursor() as cursor, cursor.cursor.copy(f'COPY "{meta.db_table}" ({names}) FROM STDIN') as copy:
        for obj in objects:
            copy.write_row([f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields])
