"""Margin taken out of one isolated position by many requests at once never goes beyond what the rule allows:
each adjustment holds the contract, the fund lock and the position (``ccp.locks``) from its check to its
commit."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connections

from ccp.errors import ApplicationError
from ccp.perps.positions import position_margin_adjust
from ccp.system.invariants import invariants_check
from tests.perps.test_position_ops import alice, held  # noqa: F401 - fixture
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_removals_never_take_out_more_than_allowed(perp, alice, now):  # noqa: F811
    position_margin_adjust(client=alice, contract=perp, amount=D(100), now=now)
    _, margin, margin_value, available = held(alice, perp)
    assert margin == D("600.1")  # at most 549.1 may come out (tests/perps/test_position_ops.py)

    def remove(_: int) -> str:
        try:
            position_margin_adjust(client=alice, contract=perp, amount=D(-100), now=now)
            return "done"
        except ApplicationError as refused:
            return refused.code
        finally:
            connections.close_all()  # each thread has its own connection

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(remove, range(10)))
    assert sorted(outcomes) == ["done"] * 5 + ["margin_remove_too_large"] * 5
    assert held(alice, perp) == (D("0.1"), D("100.1"), margin_value - 500, available + 500)
    report = invariants_check()
    assert report.ok, report.violations
