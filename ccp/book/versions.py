"""The continuous books' versions (``BookVersion``): what tells a matcher its engine is stale."""

from collections.abc import Iterable

from django.db import connection

_BUMP = """
    INSERT INTO book_bookversion (contract_id, version) SELECT id, 1 FROM unnest(%s::bigint[]) AS c(id)
    ON CONFLICT (contract_id) DO UPDATE SET version = book_bookversion.version + 1
    RETURNING contract_id, version
"""


def books_touched(contract_ids: Iterable[int]) -> dict[int, int]:
    """Bump the versions of these contracts' books (the caller holds their rows, ``ccp.locks`` 3);
    returns the new versions."""
    ids = sorted(set(contract_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_BUMP, [ids])
        return dict(cursor.fetchall())


def book_version(contract_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM book_bookversion WHERE contract_id = %s", [contract_id])
        row = cursor.fetchone()
    return row[0] if row else 0
