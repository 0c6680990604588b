"""Invariants of the books that tests assert after a flow: what every fund lock holds matches the rows
it mirrors, collateral is never over-committed, and what an auction or expiry moves sums to zero."""

from collections import defaultdict
from decimal import Decimal

from django.db.models import Sum

from ccp.accounts.models import FundLock
from ccp.orders.models import Order
from ccp.orders.states import OPEN_STATES
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement


def assert_books_balance() -> None:
    held: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for client_id, currency_id, value in Order.objects.filter(state__in=OPEN_STATES).values_list(
            "client_id", "contract__collateral_id", "order_value"):
        held[(client_id, currency_id)] += value
    locked = {(c, k): amount for c, k, amount in Lockup.objects.values("client_id", "currency_id")
              .annotate(amount=Sum("amount")).values_list("client_id", "currency_id", "amount")}
    for fund_lock in FundLock.objects.all():
        key = (fund_lock.client_id, fund_lock.currency_id)
        assert fund_lock.order_value == held.get(key, 0), f"order value of {key}"
        assert fund_lock.lockup_value == locked.get(key, 0), f"lockups of {key}"
        assert fund_lock.available >= 0, f"available of {key}"
    assert not Order.objects.exclude(state__in=OPEN_STATES).exclude(order_value=0).exists()
    for contract_id, total in Position.objects.values("contract_id").annotate(total=Sum("quantity")).values_list(
            "contract_id", "total"):
        assert total == 0, f"positions of contract {contract_id} sum to {total}"
    movements = CashMovement.objects.filter(origin__in=["auction", "expiry"]).values("origin_ref")
    for origin_ref, total in movements.annotate(total=Sum("amount")).values_list("origin_ref", "total"):
        assert total == 0, f"cash movements of {origin_ref} sum to {total}"
