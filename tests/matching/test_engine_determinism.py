"""The engine's result depends on its input only, not on the machine's load: the solver stops on work
limits (simplex iterations, branch-and-bound nodes), and the wall clock is only a guard that says when it
fired. The same bound book cleared idle and with another process burning each core gives the same result."""

import multiprocessing
import os
from dataclasses import replace
from decimal import Decimal as D

from bench.auction_book import book
from ccp.matching.auction import result_to_document
from ccp.matching.engine import clear


def _burn(stop) -> None:
    while not stop.is_set():
        pass


def test_the_same_result_with_every_core_busy():
    generated = book(1500, contract_count=6, clients=150, binding_share=0.5, seed=4)
    # a guard far from what the solve needs even on a loaded machine, and a node limit that stops a stage
    generated = replace(generated, settings=replace(generated.settings, time_limit_s=D(120), mip_max_nodes=3))
    idle = clear(generated)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for burner in burners:
        burner.start()
    try:
        loaded = clear(generated)
    finally:
        stop.set()
        for burner in burners:
            burner.join(10)
    assert idle.method.startswith("lp-prices+mip") and idle.binding_clients  # the solver ran, with bound clients
    assert not idle.time_guard and not loaded.time_guard
    assert result_to_document(loaded) == result_to_document(idle)
    assert loaded.reasons == idle.reasons
