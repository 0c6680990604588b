"""The private stream's balance event is the API's balance (``BalanceSerializer``), field for field."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.serializers import BalanceSerializer
from ccp.accounts.services import balance_events
from tests.conftest import NOW
from tests.factories import FundLockFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("fundlock", "settle", "order", "lockup", "at"), [
    ("1000", "-3.5", "2", "0", NOW),
    ("0.000000000000000001", "12345678901234567890.123456789012345678", "0", "7.10", NOW + timedelta(microseconds=7)),
    ("5", "0", "1.5", "2.25", NOW.replace(microsecond=0)),
])
def test_a_balance_event_is_the_api_balance(fundlock, settle, order, lockup, at):
    fund_lock = FundLockFactory(fundlock=D(fundlock), settle_value=D(settle), order_value=D(order),
                                lockup_value=D(lockup), updated_at=at)
    fund_lock.refresh_from_db()
    assert balance_events([fund_lock]) == [(fund_lock.client_id, {"type": "balance",
                                                                  "balance": BalanceSerializer(fund_lock).data})]
