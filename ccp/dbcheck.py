"""The connection pool's check of a connection before it hands it out (``DATABASES`` ``pool`` ``check``).

psycopg_pool's own check (``ConnectionPool.check_connection``) sends an empty query: a round trip to PostgreSQL
for every request and task, about a tenth of a single order's statements. A connection PostgreSQL dropped (a
restart, a terminated backend) has something to read when nothing was asked: the server's last message and
the end of the stream. So the round trip is made only then, or when psycopg already saw the connection
break; a connection with nothing waiting on its socket is handed out as it is. Imports no Django: the
settings name it.
"""

from __future__ import annotations

import select

import psycopg
from psycopg_pool import ConnectionPool


def connection_check(conn: psycopg.Connection) -> None:
    """Raise (the pool then drops the connection and takes another) when ``conn`` is closed or broken, or when
    PostgreSQL sent it anything unasked and the empty query psycopg_pool checks with fails."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)
