"""Django's PostgreSQL backend (``ENGINE = "ccp.postgres"``), checking connections with ``ccp.dbcheck.connection_check``
instead of an empty query: its pool's before it hands one out, and a connection kept between requests
(``CCP_DB_PER_THREAD``) before a request uses it again."""

import psycopg
from django.db.backends.postgresql import base

from ccp.dbcheck import connection_check


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Django builds the pool with psycopg_pool's check (an empty query) when CONN_HEALTH_CHECKS is on, and
        # gives no way to pass another: it is replaced once, when the process first uses the pool.
        if pool is not None and pool._check is not None and pool._check is not connection_check:
            pool._check = connection_check
        return pool

    def is_usable(self) -> bool:
        """Whether a kept connection can serve the next request (Django asks before the request's first query,
        with CONN_HEALTH_CHECKS, and after a database error): without Django's ``SELECT 1`` round trip unless
        PostgreSQL sent the connection something unasked, as when it restarted."""
        if self.connection is None:
            return False
        try:
            connection_check(self.connection)
        except psycopg.Error:
            return False
        return True
