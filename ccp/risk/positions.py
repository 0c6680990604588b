"""A position's cost, entry price and realised PnL: pure arithmetic, shared by every venue and by expiry.

A position is a signed quantity (positive long) and its ``cost``: the premiums paid for its open
quantity (negative for a short: premiums received). Every contract's premium is its price less a
constant (a future's floor, an option's zero: ``ccp.contracts.payoffs.premium_per_unit``), so the
entry price, the average price the open quantity was entered at, is cost / quantity plus that constant
(shown rounded half-even to storage precision).

  - adding to a position (or opening it) adds the fill's premiums to its cost;
  - reducing it releases the closed share of the cost (rounded half-even to storage precision) and
    realises the fill's cash less that share: closing q of a long entered at e at price p realises
    q x (p - e);
  - a fill through zero closes the whole position (all its cost) and opens the rest at the fill's price;
  - expiry closes the position at its payoff.

So realised PnL - cost always equals the position's cash movements, and with
unrealised PnL = quantity x premium(mark) - cost, realised + unrealised = cash movements + quantity x
premium(mark), exactly: every amount stays at storage precision.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ccp.contracts.payoffs import Terms, premium_per_unit
from ccp.money import ZERO, quantize


@dataclass(frozen=True, slots=True)
class PositionState:
    quantity: Decimal
    cost: Decimal  # premiums paid for the open quantity (negative: received for a short)
    realised_pnl: Decimal


FLAT = PositionState(ZERO, ZERO, ZERO)


def entry_price(terms: Terms, state: PositionState) -> Decimal | None:
    """The average price of the open quantity; None while flat."""
    if not state.quantity:
        return None
    return quantize(state.cost / state.quantity - _premium_offset(terms), ROUND_HALF_EVEN)


@functools.lru_cache(maxsize=1024)
def _premium_offset(terms: Terms) -> Decimal:
    """premium(price) - price: minus a future's floor, zero for an option."""
    return premium_per_unit(terms, ZERO)


def position_trade(terms: Terms, state: PositionState, quantity: Decimal, price: Decimal) -> PositionState:
    """``state`` after trading the signed ``quantity`` (positive bought) at ``price``."""
    return position_move(state, quantity, -quantity * premium_per_unit(terms, price))


def position_move(state: PositionState, quantity: Decimal, cash: Decimal) -> PositionState:
    """``state`` after a change of the signed ``quantity`` that moved ``cash`` to the client (a trade's
    premiums, or expiry's payoff closing the position)."""
    old, new = state.quantity, state.quantity + quantity
    if not old or (old > 0) == (quantity > 0):  # opened or added to
        return PositionState(new, state.cost - cash, state.realised_pnl)
    if new and (new > 0) == (old > 0):  # reduced: the closed share of the cost is released
        released = quantize(state.cost * -quantity / old, ROUND_HALF_EVEN)
        return PositionState(new, state.cost - released, state.realised_pnl + cash - released)
    # closed, or through zero: the closing part's cash share realises the whole cost, the rest opens
    closing_cash = quantize(cash * -old / quantity, ROUND_HALF_EVEN) if new else cash
    return PositionState(new, -(cash - closing_cash), state.realised_pnl + closing_cash - state.cost)


def unrealised_pnl(terms: Terms, state: PositionState, mark_price: Decimal | None) -> Decimal | None:
    """quantity x premium(mark) - cost; None without a mark."""
    if mark_price is None:
        return None
    return state.quantity * premium_per_unit(terms, mark_price) - state.cost
