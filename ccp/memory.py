"""Memory management for the bulk stages (an auction's snapshot, solve and booking)."""

import functools
import gc
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
