from celery import shared_task
from django.conf import settings

from ccp.book.services import book_match
from ccp.clock import utcnow


def book_queue(contract_id: int) -> str:
    """The Celery queue of a contract's matcher: contracts spread over ``CCP_BOOK_QUEUES`` queues
    (``book-0``, ``book-1``, ...) by id. Ops run one single-process worker per queue."""
    return f"book-{contract_id % settings.CCP_BOOK_QUEUES}"


def book_match_later(contract_id: int) -> None:
    """Queue the contract's matcher (one task matches everything the contract has received by then)."""
    book_match_task.apply_async((contract_id,), queue=book_queue(contract_id))


@shared_task(name="book.match")
def book_match_task(contract_id: int) -> int:
    """Match the contract's received orders, batch after batch, until none is left. Safe to run twice
    and concurrently: batches of one contract run one at a time (ccp.book.services)."""
    matched = 0
    while taken := book_match(contract_id=contract_id, now=utcnow()):
        matched += taken
        if taken < settings.CCP_BOOK_BATCH:
            break
    return matched
