"""The continuous books' versions (``BookVersion``): what tells a matcher its engine is stale."""

from collections.abc import Iterable, Mapping, Sequence

from django.db import connection

from ccp.db import Sent, Write, number_array, writes_send, writes_with
from ccp.locks import CLIENT_STREAM_SEQUENCES_SQL

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


# ``books_numbered``: the three numberings that end a matcher run's write, in one statement. The contract rows
# and the book versions are its caller's (``ccp.locks`` 3, held); the client rows come last (8), locked in id
# order by their subquery as ``ccp.locks.client_stream_sequences_take`` does.
_NUMBERED = f"""
    WITH versions AS ({_BUMP}),
    levels AS (
        UPDATE contracts_contract AS c SET book_sequence = c.book_sequence + n.count
        FROM unnest(%s::bigint[], %s::bigint[]) AS n(id, count) WHERE c.id = n.id
        RETURNING c.id, c.book_sequence),
    clients AS ({CLIENT_STREAM_SEQUENCES_SQL})
    SELECT 0, contract_id, version FROM versions
    UNION ALL SELECT 1, id, book_sequence FROM levels
    UNION ALL SELECT 2, id, stream_sequence FROM clients
"""


def books_numbered(*, contract_ids: Iterable[int], levels: Mapping[int, int], messages: Mapping[int, int],
                   writes: Sequence[Write] = ()) -> Sent | None:
    """In one statement (a matcher run's last), sent (``ccp.db.Sent``: in a ``ccp.db.one_round_trip`` with the
    writes held before it): ``books_touched`` of ``contract_ids``; the book sequences of ``levels``' contracts
    (contract id -> its changed levels) moved by their counts, as ``ccp.orders.services.books_levels_changed``
    numbers them; the private stream numbers of ``messages``' clients (client id -> messages) taken, as
    ``ccp.locks.client_stream_sequences_take`` takes them. Its ``result``: (the new versions, each contract's new
    last book sequence, each client's new last stream number); None when there is nothing to number (``writes``
    are sent then). The caller holds the contracts' rows (``ccp.locks`` 3); the clients' rows are locked here
    (8), last. ``writes``: the caller's writes to send in the same statement (``ccp.db.writes_with``), of rows
    it holds."""
    ids, level_ids, clients = sorted(set(contract_ids)), sorted(levels), sorted(messages)
    if not ids and not level_ids and not clients:
        if writes:
            writes_send(writes)
        return None
    clients_text = number_array(clients)
    statement = writes_with(writes, _NUMBERED, [
        number_array(ids), number_array(level_ids), number_array(levels[i] for i in level_ids), clients_text,
        clients_text, number_array(messages[i] for i in clients)],
        tables={"book_bookversion", "contracts_contract", "accounts_client"})

    def parse(rows: list[tuple]) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        found: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
        for kind, key, number in rows:
            found[kind][key] = number
        return found

    return Sent(*statement, parse)


def book_version(contract_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM book_bookversion WHERE contract_id = %s", [contract_id])
        row = cursor.fetchone()
    return row[0] if row else 0
