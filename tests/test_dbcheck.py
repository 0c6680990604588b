"""The connection pool's check (``ccp.dbcheck``): a pooled connection with nothing waiting on its socket is
handed out without a round trip to PostgreSQL; one whose backend PostgreSQL ended (a restart, a terminated
backend) is refused, so the pool drops it and takes another. The server's request threads keep a connection
each (``CCP_DB_PER_THREAD``), checked the same way before each request."""

import os
import select
import subprocess
import sys
import tempfile

import psycopg
import pytest
import uvicorn
from django.db import connection
from psycopg_pool import ConnectionPool

from ccp import server
from ccp.dbcheck import connection_check
from ccp.postgres.base import DatabaseWrapper
from tests.processes import REPO

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


@pytest.fixture
def kept():
    """A connection of the server's kind (``ccp.postgres``), its own, as a request thread keeps it between requests."""
    db = connection.settings_dict
    wrapper = DatabaseWrapper({**db, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True,
                               "OPTIONS": {k: v for k, v in db["OPTIONS"].items() if k != "pool"}}, "kept")
    wrapper.ensure_connection()
    assert wrapper.pool is None
    yield wrapper
    wrapper.close()


def test_a_kept_connection_is_usable_again_without_a_round_trip(kept):
    kept.connection.execute("SELECT 1")
    assert sent_and_received(kept.connection, lambda _: kept.is_usable()) == b""
    assert kept.is_usable()


def test_a_kept_connection_whose_backend_ended_is_not_usable_and_is_replaced(kept):
    pid = kept.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert select.select([kept.connection.pgconn.socket], [], [], 5)[0], "PostgreSQL's goodbye arrives"
    assert not kept.is_usable()
    kept.health_check_done = False  # as at the start of a request (close_old_connections)
    with kept.cursor() as cursor:  # Django drops it and connects again
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_the_server_keeps_a_connection_per_request_thread_and_the_others_pool(monkeypatch):
    monkeypatch.setenv("CCP_DB_PER_THREAD", "")
    monkeypatch.delenv("CCP_DB_PER_THREAD")  # restored as it was (unset) after the test
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(env=os.environ.get("CCP_DB_PER_THREAD")))
    server.main([])
    assert seen == {"env": "1"}  # the worker processes inherit it
    settings_of = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'ccp.settings'; django.setup(); "
                   "from django.conf import settings; d = settings.DATABASES['default']; "
                   "print(d['ENGINE'], d['CONN_MAX_AGE'], 'pool' in d.get('OPTIONS', {}))")
    env = {k: v for k, v in os.environ.items() if k not in ("CCP_DB_PER_THREAD", "CCP_DB_POOL")}
    kept_, pooled = (subprocess.run([sys.executable, "-c", settings_of], cwd=REPO, env={**env, **extra},
                                    capture_output=True, text=True, check=True).stdout.split()
                     for extra in ({"CCP_DB_PER_THREAD": "1"}, {}))
    assert kept_ == ["ccp.postgres", "None", "False"]
    assert pooled == ["ccp.postgres", "0", "True"]
