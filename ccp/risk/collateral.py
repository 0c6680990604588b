"""Available collateral: the one rule, for order entry, withdrawals, the balance a trader sees and the
invariant checks.

A client's collateral in one currency (its ``FundLock`` row) is

    available = fundlock + settle_value - order_value - lockup_value - margin_value

where ``fundlock`` is what the FundLock contract holds for it (as last seen on chain), ``settle_value``
the signed sum of its cash movements not yet performed on chain, ``order_value`` what its open orders
hold (a continuous or perpetual order its worst case, ``ccp.orders.rules.order_value``; an auction order
what it added to its portfolio's worst case at entry, ``order_value_netted``) plus what running auctions
reserved of it (``ccp.matching.models.AuctionReservation``) and ``lockup_value`` the sum of its
portfolios' lockups (``ccp.risk.lockups``) and ``margin_value`` what its perpetual positions hold
(``ccp.perps.accounting``: their margins, less the cash their open quantity already paid relative to the
perpetual's reference price; it moves with their fills, not with the mark). Available never drops below
zero: the check constraint
``fundlock_available_non_negative`` on the fund lock row refuses any write that would, and every
service that commits collateral checks ``collateral_covers`` first while holding the row's lock.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

# The same expression over accounts_fundlock's columns (the invariant checks read it in SQL).
AVAILABLE_SQL = "fundlock + settle_value - order_value - lockup_value - margin_value"


class Collateral(Protocol):
    fundlock: Decimal
    settle_value: Decimal
    order_value: Decimal
    lockup_value: Decimal
    margin_value: Decimal


def available(collateral: Collateral) -> Decimal:
    return (collateral.fundlock + collateral.settle_value - collateral.order_value - collateral.lockup_value
            - collateral.margin_value)


def collateral_covers(collateral: Collateral | None, amount: Decimal) -> bool:
    """Whether ``amount`` more can be committed (held by an order, withdrawn): a client with no fund
    lock in the currency has nothing."""
    return collateral is not None and amount <= available(collateral)
