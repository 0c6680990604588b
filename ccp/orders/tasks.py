from celery import shared_task

from ccp.clock import utcnow
from ccp.orders.services import order_validate


@shared_task(name="orders.validate")
def order_validate_task(order_id: int) -> str:
    """Validate one received order against its contract and the client's collateral. Safe to run twice."""
    return order_validate(order_id=order_id, now=utcnow()).state
