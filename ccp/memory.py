"""Memory management: the collector paused for the bulk stages (an auction's snapshot, solve and booking), and
settled in long-lived processes."""

import functools
import gc
import os
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def gc_paused(function: F) -> F:
    """Run ``function`` with Python's cyclic garbage collector paused. A bulk stage allocates hundreds
    of thousands of objects that live until it ends; every few hundred allocations the collector
    would walk the young ones again, about a third of the time of parsing a large document. Reference
    counting still frees what the stage drops; cycles wait until the collector resumes. Nests."""

    @functools.wraps(function)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return paused


# The young generation's threshold after ``gc_settle`` (Python's default: 700 allocations).
GC_YOUNG = int(os.environ.get("CCP_GC_YOUNG", "10000"))


def gc_settle() -> None:
    """For a long-lived process (a server worker, a Celery worker process) once it has loaded what it keeps for
    its life (modules, settings, URL patterns, models): collect once, move every object left to the permanent
    generation (``gc.freeze``), which the collector never walks again, and let GC_YOUNG allocations pass before
    a young collection. A full collection otherwise walks the 230,000 to 280,000 objects of a loaded process
    with its event loop or its matcher stopped: in ``bench/order_intake.py`` a server process paused up to
    0.41 s at once, in the middle of requests. What a request or a run leaves is still freed at once by
    reference counting; only cycles wait for a collection. Safe to call again (what was loaded since is frozen
    too)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
