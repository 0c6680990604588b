"""Cross margin: one account per client and collateral currency backs all its cross perpetual positions.

Pure arithmetic first, then the selector that finds the cross accounts a perpetual's new mark leaves at
or below maintenance.

The account's equity is its cash outside isolated margins and dated lockups, ``C``, plus every cross
position's value relative to its perpetual's reference price ``R`` (the cash its trades and settlements
paid so far is in ``C`` already):

    E = C + sum_j q_j * (M_j - R_j)

and its requirement is the sum of each position's maintenance plus closing fee at its mark,
``sum_j (r_j + f_j) * |q_j| * M_j``. The account is liquidated when ``E`` reaches the requirement.

Seen from one position ``i``, the rest of the account is a margin behind it (``ccp.perps.margin``'s ``m``):

    m_i = C + q_i * (e_i - R_i) + sum_{j != i} (q_j * (M_j - R_j) - (r_j + f_j) * |q_j| * M_j)

so that ``m_i + q_i * (M_i - e_i)`` is the account's equity less the other positions' requirements, and
position ``i`` reaches its requirement exactly when the account does. The isolated formulas (liquidation
and bankruptcy price, the partial size of ``ccp.perps.liquidation``) then hold for a cross position as
they are, with the other marks where they are now.

``C`` from the fund lock: ``fundlock + settle - lockups - margin_value + sum_j held_j``, since
``margin_value`` is what all the client's perpetual positions hold (``ccp.perps.accounting``: held =
margin - (cost - q * R)) and only the isolated ones' holdings are outside ``C``. Open orders' holds are
the client's collateral still: they count.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from ccp.perps.accounting import CROSS
from ccp.perps.margin import tier_of

ZERO = Decimal(0)


@dataclass(frozen=True)
class CrossLeg:
    """One cross position of an account, with its perpetual's prices and terms."""

    contract_id: int
    position_id: int
    quantity: Decimal  # signed
    cost: Decimal  # notional paid for the open quantity (entry = cost / quantity)
    margin: Decimal  # its initial margin (what it holds of available collateral, with its settled cost)
    settle_px: Decimal  # the perpetual's reference price R
    mark: Decimal
    rate: Decimal  # the maintenance rate of its size tier
    fee_rate: Decimal

    @property
    def entry_px(self) -> Decimal:
        return self.cost / self.quantity

    @property
    def value(self) -> Decimal:
        """``q * (M - R)``: what it is worth beyond the cash it paid so far."""
        return self.quantity * (self.mark - self.settle_px)

    @property
    def requirement(self) -> Decimal:
        return (self.rate + self.fee_rate) * abs(self.quantity) * self.mark

    @property
    def held(self) -> Decimal:
        return self.margin - (self.cost - self.quantity * self.settle_px)


def cross_cash(*, fundlock: Decimal, settle_value: Decimal, lockup_value: Decimal, margin_value: Decimal,
               legs: Iterable[CrossLeg]) -> Decimal:
    """``C``: the account's cash outside isolated margins and dated lockups (module docstring)."""
    return fundlock + settle_value - lockup_value - margin_value + sum((leg.held for leg in legs), ZERO)


def cross_equity(cash: Decimal, legs: Iterable[CrossLeg]) -> Decimal:
    return cash + sum((leg.value for leg in legs), ZERO)


def cross_requirement(legs: Iterable[CrossLeg]) -> Decimal:
    return sum((leg.requirement for leg in legs), ZERO)


def leg_margin(cash: Decimal, legs: Sequence[CrossLeg], leg: CrossLeg) -> Decimal:
    """``m_i``: what the rest of the account puts behind ``leg`` (module docstring)."""
    others = sum((other.value - other.requirement for other in legs if other is not leg), ZERO)
    return cash + leg.quantity * (leg.entry_px - leg.settle_px) + others


@dataclass(frozen=True)
class CrossFound:
    """A cross position whose account is at or below its requirement, seen as an isolated position backed
    by ``margin`` (``leg_margin``)."""

    client_id: int
    contract_id: int
    position_id: int
    quantity: Decimal
    entry_px: Decimal
    margin: Decimal
    equity: Decimal  # margin + q * (M - entry): the account's equity less the other legs' requirements
    requirement: Decimal  # this leg's maintenance plus closing fee
    account_equity: Decimal
    account_requirement: Decimal
    below: bool = True  # at or below its requirement: liquidated; else only past its margin call


def cross_below(*, client_id: int, cash: Decimal, legs: Sequence[CrossLeg], contract_id: int,
                call_ratio: Decimal | None = None) -> CrossFound | None:
    """The account's leg on ``contract_id`` when the account is at or below its requirement, or (with
    ``call_ratio``) when its requirement has reached ``call_ratio`` of its equity (``below`` false); else None."""
    equity, requirement = cross_equity(cash, legs), cross_requirement(legs)
    leg = next((leg for leg in legs if leg.contract_id == contract_id), None)
    if leg is None:
        return None
    below = equity <= requirement
    if not below and (call_ratio is None or (equity > 0 and requirement < call_ratio * equity)):
        return None
    margin = leg_margin(cash, legs, leg)
    return CrossFound(client_id=client_id, contract_id=contract_id, position_id=leg.position_id,
                      quantity=leg.quantity, entry_px=leg.entry_px,
                      margin=margin, equity=margin + leg.quantity * (leg.mark - leg.entry_px),
                      requirement=leg.requirement, account_equity=equity, account_requirement=requirement,
                      below=below)


# The cross accounts holding a position on the contract, with every cross leg they hold in its currency and
# each leg's perpetual prices. One statement: the fund lock, the legs and their perpetuals.
_ACCOUNTS_SQL = """
SELECT p.client_id, f.fundlock, f.settle_value, f.lockup_value, f.margin_value,
       p.contract_id, p.id, p.quantity, p.cost, p.margin, pp.settle_px, pp.mark_px, pp.marked_at, pp.tiers,
       pp.liquidation_fee_rate
FROM risk_position p
JOIN contracts_contract c ON c.id = p.contract_id
JOIN perps_perpetual pp ON pp.contract_id = p.contract_id
JOIN accounts_fundlock f ON f.client_id = p.client_id AND f.currency_id = c.collateral_id
WHERE p.margin_mode = %(cross)s AND p.quantity <> 0 AND c.collateral_id = %(currency)s
  AND p.client_id IN (SELECT client_id FROM risk_position
                      WHERE contract_id = %(contract)s AND margin_mode = %(cross)s AND quantity <> 0)
ORDER BY p.client_id, p.contract_id
"""


def cross_accounts(*, contract_id: int, currency_id: int, fresh_since: datetime,
                   exclude: Iterable[int] = ()) -> dict[int, tuple[Decimal, list[CrossLeg]]]:
    """Every cross account holding a position on the perpetual ``contract_id``: client -> (its cash ``C``, its
    cross legs in the currency), in one statement. An account with a leg whose mark is not fresh (set before
    ``fresh_since``, or none) is left out: nothing liquidates on a stale price; so are ``exclude``'s."""
    from ccp.perps.models import tiers_parse  # models import this module's callers

    excluded = set(exclude)
    accounts: Mapping[int, list] = defaultdict(list)
    funds: dict[int, tuple] = {}
    with connection.cursor() as cursor:
        cursor.execute(_ACCOUNTS_SQL, {"cross": CROSS, "currency": currency_id, "contract": contract_id})
        rows = cursor.fetchall()
    tiers_cache: dict[str, list] = {}
    for (client_id, fundlock, settle_value, lockup_value, margin_value, leg_contract, position_id, quantity, cost,
         margin, settle_px, mark, marked_at, tiers, fee_rate) in rows:
        if client_id in excluded:
            continue
        funds[client_id] = (fundlock, settle_value, lockup_value, margin_value)
        if mark is None or marked_at is None or marked_at < fresh_since or settle_px is None:
            accounts[client_id].append(None)
            continue
        key = tiers if isinstance(tiers, str) else json.dumps(tiers)
        parsed = tiers_cache.get(key) or tiers_cache.setdefault(key, tiers_parse(json.loads(key)))
        accounts[client_id].append(CrossLeg(
            contract_id=leg_contract, position_id=position_id, quantity=quantity, cost=cost, margin=margin,
            settle_px=settle_px, mark=mark, rate=tier_of(parsed, quantity).rate, fee_rate=fee_rate))
    found = {}
    for client_id, legs in accounts.items():
        if all(leg is not None for leg in legs):
            fundlock, settle_value, lockup_value, margin_value = funds[client_id]
            found[client_id] = (cross_cash(fundlock=fundlock, settle_value=settle_value, lockup_value=lockup_value,
                                           margin_value=margin_value, legs=legs), legs)
    return found


def cross_accounts_below(*, contract_id: int, currency_id: int, fresh_since: datetime,
                         exclude: Iterable[int] = (), call_ratio: Decimal | None = None) -> list[CrossFound]:
    """Every cross account holding a position on the perpetual ``contract_id`` that its perpetuals' current
    marks leave at or below its requirement (with ``call_ratio``, also those only past their margin call:
    ``below`` false), as ``CrossFound`` for its leg on that contract, by client (``cross_accounts``: stale
    ones left alone). ``exclude``: clients never liquidated (the insurance fund). Reads every cross account
    on the contract (their trigger moves with their other positions and collateral); the caller holds the
    contract's row, which every booking on it holds too."""
    found = []
    for client_id, (cash, legs) in cross_accounts(contract_id=contract_id, currency_id=currency_id,
                                                  fresh_since=fresh_since, exclude=exclude).items():
        reached = cross_below(client_id=client_id, cash=cash, legs=legs, contract_id=contract_id,
                              call_ratio=call_ratio)
        if reached is not None:
            found.append(reached)
    return found


# Parameters: the client ids, the currency id, ``CROSS``. The matcher reads it with its other reads of a batch's
# clients (``ccp.book.services._clients_read``).
LOSS_SQL = """
SELECT p.client_id, SUM(p.quantity * (COALESCE(pp.mark_px, pp.settle_px) - pp.settle_px))
FROM risk_position p
JOIN contracts_contract c ON c.id = p.contract_id
JOIN perps_perpetual pp ON pp.contract_id = p.contract_id
WHERE p.client_id = ANY(%s) AND c.collateral_id = %s AND p.margin_mode = %s AND p.quantity <> 0
  AND pp.settle_px IS NOT NULL
GROUP BY p.client_id
"""


def cross_unrealised_losses(*, client_ids: Iterable[int], currency_id: int) -> dict[int, Decimal]:
    """What each client's cross positions in the currency have lost at their latest marks since their cash was
    last settled (``max(0, -sum q * (M - R))``; clients without a loss left out): collateral that backs a loss
    no cash movement took yet, so it neither backs new orders nor leaves on a withdrawal. A gain counts for
    nothing before it is settled."""
    ids = sorted(set(client_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(LOSS_SQL, [ids, currency_id, CROSS])
        return losses_of(cursor.fetchall())


def losses_of(rows: Iterable[tuple[int, Decimal]]) -> dict[int, Decimal]:
    """``LOSS_SQL``'s rows (client, sum at the marks) as losses by client: a gain counts for nothing."""
    return {client_id: -value for client_id, value in rows if value < 0}


def cross_unrealised_loss(*, client_id: int, currency_id: int) -> Decimal:
    """``cross_unrealised_losses`` of one client (zero without a loss)."""
    return cross_unrealised_losses(client_ids=[client_id], currency_id=currency_id).get(client_id, ZERO)
