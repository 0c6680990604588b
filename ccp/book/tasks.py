import contextlib
import time

import redis
from celery import shared_task
from celery.utils import uuid
from django.conf import settings

from ccp.book.services import books_match
from ccp.clock import utcnow
from ccp.contracts.models import TradingMode
from ccp.orders.models import Order, TriggerSource
from ccp.orders.results import redis_client
from ccp.orders.states import OrderState
from ccp.perps.models import Perpetual
from ccp.perps.services import perpetual_liquidations_run


def book_queue(contract_id: int) -> str:
    """The Celery queue of a contract's matcher: contracts spread over ``CCP_BOOK_QUEUES`` queues
    (``book-0``, ``book-1``, ...) by id. Ops run one single-process worker per queue."""
    return f"book-{contract_id % settings.CCP_BOOK_QUEUES}"


# A book queue whose matcher task is queued, or running and finding work: set when queued, held while it runs.
QUEUED_TTL_S = 5
# A matcher task that still finds work after this long queues its successor and ends, so that the tasks queued
# behind it (a price move naming another contract of the queue) get their turn.
RUNS_FOR_S = 1.0


def _queued_key(contract_id: int, *, prices: bool = False) -> str:
    """The flag of the contract's queue (every task of a queue matches the work of all its contracts), or with
    ``prices`` the contract's own price flag (a run takes a contract without received work only when its task
    names it: ``book_prices_moved``)."""
    if prices:
        return f"ccp:book-match-queued:prices:{contract_id}"
    return f"ccp:book-match-queued:{book_queue(contract_id)}"


def book_match_later(contract_id: int, *, prices: bool = False) -> None:
    """Queue a matcher task for the contract's queue, unless one is queued, or running and holding the flag: a
    task's run takes the received work of every continuous contract of its queue (``book_match_task``), so
    under load one task takes many orders of all of them, not one task per order or per contract. The flag
    (Redis, ``ccp:book-match-queued:book-<n>``) is held by the task while its runs find work and let go before
    its last look at the orders, so an order stored after that queues a new task; it expires after
    QUEUED_TTL_S (a task lost with the broker, or its worker killed while holding it, costs at most that: a
    killed task is requeued, a lost one leaves its orders to the next order's task or the stale-order sweep).
    ``prices``: a task for this contract itself (its stop and take-profit orders wait on a price that moved: a
    run takes a contract with no received work only when its task names it), flagged per contract. Redis
    unreachable: always queued."""
    try:
        if not book_match_flag(redis_client(), contract_id, prices=prices):
            return
    except redis.RedisError:
        pass
    book_match_send(contract_id)


def book_match_flag(client, contract_id: int, *, prices: bool = False):
    """``book_match_later``'s flag set, when none is, by a Redis client or in a pipeline (on REDIS_URL's
    database): true when it was set (then ``book_match_send``), None when a matcher task is queued already."""
    return client.set(_queued_key(contract_id, prices=prices), 1, nx=True, ex=QUEUED_TTL_S)


def book_match_send(contract_id: int) -> None:
    """Queue ``book_match_task(contract_id)`` on the contract's queue: the message ``apply_async`` sends, built
    and sent by the same Celery calls (``create_task_message``, ``send_task_message``: its signals, its
    producer pool), without what ``apply_async`` does around them that a server never needs here (routing a
    task whose queue is given, a parent task, a result object, a repr of the arguments): about two thirds of
    its CPU (558 -> 356 us a message; tests/book/test_match_send.py compares the two messages)."""
    app = book_match_task.app
    if app.conf.task_always_eager:  # run here (CCP_CELERY_EAGER, tests): apply_async knows how
        book_match_task.apply_async((contract_id,), queue=book_queue(contract_id))
        return
    message = app.amqp.create_task_message(uuid(), book_match_task.name, (contract_id,), {},
                                           argsrepr=repr((contract_id,)), kwargsrepr="{}",
                                           reply_to=app.thread_oid)
    with app.producer_or_acquire() as producer:
        app.amqp.send_task_message(producer, book_match_task.name, message, queue=book_queue(contract_id))


@shared_task(name="book.match")
def book_match_task(contract_id: int) -> int:
    """Match the contract's received orders, run after run, until none is left; each run also takes the work
    of every other continuous contract of the same queue that has some (``books_match`` with
    ``CCP_BOOK_QUEUES``: one transaction for them all; one task per queue is queued at a time). On a
    perpetual a run matched, then liquidate the positions its trades left at or below their requirement
    (their orders queue this task again). Safe to run twice and concurrently: runs that share a contract
    take it one at a time (ccp.book.services).

    While its runs find work the task holds its queue's flag (``book_match_later``), so the orders stored
    meanwhile queue no task of their own: its next run, straight after, takes them. A run that finds none
    lets the flag go, then looks once more (an order stored while the flag was held, committed before it went,
    is in that look; one stored after it queues a task). Under steady load the runs follow each other without
    a task message, a Celery dispatch and a flag round trip between them. After RUNS_FOR_S of runs that still
    find work, the task queues its successor (the flag still held: no order queues another) and ends. A run
    that fails lets the flag go before the task fails."""
    client, flag = redis_client(), _queued_key(contract_id)
    with contextlib.suppress(redis.RedisError):
        client.delete(_queued_key(contract_id, prices=True))
    matched, holding, held_at, ends = 0, True, None, time.monotonic() + RUNS_FOR_S
    while True:
        if holding and (held_at is None or time.monotonic() - held_at > QUEUED_TTL_S / 2):
            held_at = _flag_hold(client, flag)  # its time from now, refreshed as the runs go on
        try:
            taken = books_match(contract_id=contract_id, now=utcnow(), queues=settings.CCP_BOOK_QUEUES)
            for matched_id in sorted(taken):
                if taken[matched_id] and _is_perpetual(matched_id):
                    perpetual_liquidations_run(contract_id=matched_id, now=utcnow())
        except Exception:
            _flag_let_go(client, flag)  # the next order stored queues a task at once
            raise
        count = sum(taken.values())  # a run named by a price move may take its contract with no order: 0
        matched += count
        # a successor, behind the tasks queued meanwhile (eager tasks, CCP_CELERY_EAGER: no queue to wait in, and
        # the successor would run inside this one)
        if count and time.monotonic() > ends and not book_match_task.app.conf.task_always_eager:
            _flag_hold(client, flag)  # held, so that no order queues another
            book_match_send(contract_id)
            return matched
        if count:
            holding = True
        elif holding:
            holding, held_at = False, None
            _flag_let_go(client, flag)
        else:
            return matched


def _flag_hold(client, flag: str) -> float:
    with contextlib.suppress(redis.RedisError):
        client.set(flag, 1, ex=QUEUED_TTL_S)
    return time.monotonic()


def _flag_let_go(client, flag: str) -> None:
    with contextlib.suppress(redis.RedisError):
        client.delete(flag)


_PERPETUALS: dict[int, bool] = {}  # a contract's kind never changes


def _is_perpetual(contract_id: int) -> bool:
    known = _PERPETUALS.get(contract_id)
    if known is None:
        known = _PERPETUALS[contract_id] = Perpetual.objects.filter(contract_id=contract_id).exists()
    return known


def book_prices_moved() -> list[int]:
    """Queue the matcher of every continuous contract with a stop or take-profit order waiting on its
    mark or index price (after each price update): the matcher gives the engine the new prices."""
    contract_ids = sorted(set(Order.objects.filter(
        state=OrderState.UNTRIGGERED, trigger_source__in=[TriggerSource.MARK, TriggerSource.INDEX],
        contract__trading_mode=TradingMode.CONTINUOUS).values_list("contract_id", flat=True)))
    for contract_id in contract_ids:
        book_match_later(contract_id, prices=True)
    return contract_ids
