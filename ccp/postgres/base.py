"""Django's PostgreSQL backend (``ENGINE = "ccp.postgres"``), its connection pool checking connections with
``ccp.dbcheck.connection_check`` instead of an empty query before every request and task."""

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
