"""The lockup computation: collateral locked for a client's portfolio of one (pair, expiry date).

A portfolio's lockup is max(0, -its worst-case payoff over every settlement price)
(``ccp.contracts.payoffs.lockup_amount``: the payoff is piecewise linear, so the worst case is at a
kink point), rounded up to storage precision so the clearing house never locks less than needed.
Positions netting inside a portfolio is what a clearing house is for: a call spread locks the spread,
not the short leg's whole payoff.

``lockups_recompute`` is the one writer of lockup rows: the booking of trades (``ccp.clearing.booking``)
and expiry (positions closed: every lockup released) call it with the portfolios they changed, and
apply the returned change to the fund locks' mirror ``lockup_value`` in the same transaction. The
invariant checker (``ccp.system.invariants``) recomputes every lockup with ``lockups_required``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_UP, Decimal
from typing import TypeVar

from ccp.contracts.models import Contract
from ccp.contracts.payoffs import Leg, lockup_amounts
from ccp.db import Behind, Sent, upsert_behind
from ccp.locks import lockup_rows_sent
from ccp.money import ZERO, quantize
from ccp.risk.models import Lockup

K = TypeVar("K")
Portfolio = tuple[int, int, date]  # (client id, pair id, expiry date)


def portfolio_of(client_id: int, contract: Contract) -> Portfolio:
    return client_id, contract.pair_id, contract.expiry_date


def lockups_required(portfolios: Mapping[K, Iterable[Leg]]) -> dict[K, Decimal]:
    """The lockup each portfolio needs, at storage precision (rounded up)."""
    return {key: quantize(amount, ROUND_UP) for key, amount in lockup_amounts(portfolios).items()}


def lockups_read(portfolios: Iterable[Portfolio]) -> list[tuple]:
    """Lock (``ccp.locks`` 7) the lockup rows of ``portfolios`` (and of the other combinations of their clients,
    pairs and expiry dates): ``(client_id, pair_id, expiry_date, amount)``."""
    return lockups_sent(portfolios).result()


def lockups_sent(portfolios: Iterable[Portfolio]) -> Sent:
    """``lockups_read``'s statement sent (``ccp.db.Sent``: in ``ccp.db.one_round_trip`` with others)."""
    portfolios = list(portfolios)
    return lockup_rows_sent({k[0] for k in portfolios}, {k[1] for k in portfolios}, {k[2] for k in portfolios})


def lockups_recompute(*, quantities: Mapping[tuple[int, int], Decimal], contracts: Mapping[int, Contract],
                      touched: Iterable[Portfolio], now: datetime, behind: Behind | None = None,
                      locked: list[tuple] | None = None) -> dict[tuple[int, int], Decimal]:
    """Recompute the lockups of the ``touched`` portfolios from ``quantities`` ((client, contract) ->
    signed quantity after the change; it must hold every non-zero position of those portfolios, and
    ``contracts`` every contract of them) and write those that changed. Locks (``ccp.locks`` 7) the
    portfolios' lockup rows. Returns the change per (client, currency) for the fund locks' mirror.
    ``behind``: the caller's writer on a thread (``ccp.db.Behind``): the lock waits for it, the write goes
    to it. ``locked``: the rows, locked and read ahead by the caller (``lockups_read`` of at least the touched
    portfolios)."""
    touched = sorted(set(touched))
    if not touched:
        return {}
    legs: dict[Portfolio, list[Leg]] = defaultdict(list)
    currency = {(c.pair_id, c.expiry_date): c.collateral_id for c in contracts.values()}
    for (client_id, contract_id), quantity in quantities.items():
        contract = contracts[contract_id]
        if quantity:
            legs[portfolio_of(client_id, contract)].append(Leg(contract.terms, quantity))
    wanted = lockups_required({key: legs.get(key, []) for key in touched})
    if locked is None:
        if behind is not None:
            behind.wait()
        locked = lockups_read(touched)
    current = {(client_id, pair_id, expiry_date): amount for client_id, pair_id, expiry_date, amount in locked}
    delta: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    rows = []
    for key in touched:
        amount, before = wanted[key], current.get(key)
        if amount != before and not (before is None and not amount):
            client_id, pair_id, expiry_date = key
            rows.append({"client_id": client_id, "pair_id": pair_id, "expiry_date": expiry_date,
                         "currency_id": currency[(pair_id, expiry_date)], "amount": amount, "updated_at": now})
            delta[(client_id, currency[(pair_id, expiry_date)])] += amount - (before or ZERO)
    upsert_behind(behind, Lockup, rows, key=["client_id", "pair_id", "expiry_date"], replace=["amount", "updated_at"])
    return dict(delta)
