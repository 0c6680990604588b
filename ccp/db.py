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
