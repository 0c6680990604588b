import os
from datetime import UTC, datetime

import pytest

if "DATABASE_URL" not in os.environ:  # pragma: no cover - guard for a bare `pytest`
    raise pytest.UsageError("Run the tests with bin/test: it starts PostgreSQL and Redis and sets DATABASE_URL.")

# A fixed, aware UTC instant; services take `now` from their caller.
NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW
