from celery import shared_task
from django.conf import settings

from ccp.clock import utcnow
from ccp.orders.models import Order
from ccp.orders.selectors import stale_received_order_ids
from ccp.orders.services import order_validate, orders_queue


@shared_task(name="orders.validate")
def order_validate_task(order_id: int) -> str:
    """Validate one received order against its contract and the client's collateral. Safe to run twice."""
    return order_validate(order_id=order_id, now=utcnow()).state


@shared_task(name="orders.validate_batch")
def orders_validate_task(order_ids: list[int]) -> list[str]:
    """Validate the received orders of one batch request, each in its own transaction, in order. Safe
    to run twice."""
    now = utcnow()
    return [order_validate(order_id=order_id, now=now).state for order_id in order_ids]


@shared_task(name="orders.requeue_stale")
def orders_requeue_stale_task() -> int:
    """Re-queue orders still 'received' after a while (the broker was down when they arrived, or a
    worker died mid-task): their validation, or their contract's matcher. Both are idempotent, so a
    duplicate is harmless."""
    order_ids = stale_received_order_ids(now=utcnow(), older_than=settings.CCP_ORDER_REQUEUE_AFTER)
    orders_queue(list(Order.objects.filter(pk__in=order_ids).select_related("contract")))
    return len(order_ids)
