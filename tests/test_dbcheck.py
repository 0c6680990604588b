"""The connection pool's check (``ccp.dbcheck``): a pooled connection with nothing waiting on its socket is
handed out without a round trip to PostgreSQL; one whose backend PostgreSQL ended (a restart, a terminated
backend) is refused, so the pool drops it and takes another."""

import select
import tempfile

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from ccp.dbcheck import connection_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn():
    db = connection.settings_dict
    with psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"],
                         autocommit=True) as raw:
        yield raw


def sent_and_received(conn, check) -> bytes:
    """What ``check(conn)`` exchanged with PostgreSQL (libpq's protocol trace)."""
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            check(conn)
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return trace.read()


def test_a_live_connection_passes_without_a_round_trip(conn):
    conn.execute("SELECT 1")
    assert sent_and_received(conn, connection_check) == b""
    assert sent_and_received(conn, ConnectionPool.check_connection) != b""  # the trace sees a round trip
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_connection_whose_backend_ended_is_refused(conn):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    assert select.select([conn.pgconn.socket], [], [], 5)[0], "PostgreSQL's goodbye arrives"
    with pytest.raises(psycopg.OperationalError):
        connection_check(conn)


def test_a_broken_connection_is_refused_without_touching_its_socket(conn):
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        connection_check(conn)


def test_the_pool_of_django_connections_checks_with_it():
    connection.ensure_connection()
    pool = connection.pool
    if pool is None:
        pytest.skip("no pool (CCP_DB_POOL=0)")
    assert pool._check is connection_check
