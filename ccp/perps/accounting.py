"""What a fill, a funding payment and a variation settlement do to a perpetual position, its cash and the
collateral it holds. Pure: no ORM, exact Decimal (storage precision where a rounding is named).

A position: signed quantity ``q``, ``cost`` (the notional paid for its open quantity: negative for a
short, kept exactly as ``ccp.risk.positions.position_move`` keeps a dated position's premiums, with
``entry = cost / q``), realised PnL, and ``margin`` (isolated: the collateral allocated to it, funding
included; cross: its initial margin, notional at entry / leverage). The perpetual's reference price ``R``
(``ccp.perps.margin``) is where cash has been settled to so far.

Cash, summing to zero over the two sides of every trade and over the positions of every settlement:
- a fill of ``d`` (signed: bought positive) at ``p``: ``-d * (p - R)``;
- a variation settlement at mark ``M``: ``q * (M - R)``, then ``R = M``;
- funding: what ``ccp.perps.margin.funding_payments`` says.

What the position holds out of its client's available collateral (the fund lock's ``margin_value`` is the
sum over the client's positions in the currency) is ``held = margin - (cost - q * R)``: the margin, less
the cash its open quantity already paid relative to ``R`` (or plus what it received). So:
- opening (or adding) at leverage ``L`` makes available fall by exactly ``|d| * p / L``;
- a variation settlement changes cash and ``held`` alike, and available not at all;
- closing ``c`` of ``n`` gives back ``margin * c / n`` plus the realised PnL ``c * (p - entry)`` (long);
- funding paid into an isolated position's margin changes ``held`` with the cash (the position's equity
  moves, available does not); a cross position's funding moves available.
``cost - q * R`` is what its cash movements paid for its open quantity, so realised PnL less it equals the
sum of the position's trade and settlement cash at every step, exactly (the journal invariant of dated
positions; funding is journaled apart).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from ccp.money import QUANTUM, quantize
from ccp.risk.positions import PositionState, position_move

ZERO = Decimal(0)
CROSS, ISOLATED = "cross", "isolated"


@dataclass(frozen=True)
class PerpPosition:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # notional paid for the open quantity (negative: received, a short)
    margin: Decimal = ZERO
    mode: str = CROSS
    realised_pnl: Decimal = ZERO

    @property
    def entry_px(self) -> Decimal | None:
        """The average price of the open quantity (exact quotient; shown at storage precision)."""
        return self.cost / self.quantity if self.quantity else None

    @property
    def entry_shown(self) -> Decimal | None:
        return None if not self.quantity else quantize(self.entry_px, ROUND_HALF_EVEN)

    def settled_cost(self, settle_px: Decimal) -> Decimal:
        """What the open quantity's cash paid relative to ``R``: ``cost - q * R``."""
        return self.cost - self.quantity * settle_px

    def held(self, settle_px: Decimal) -> Decimal:
        return self.margin - self.settled_cost(settle_px)


@dataclass(frozen=True)
class Booked:
    position: PerpPosition
    cash: Decimal  # signed: positive credits the client
    held_change: Decimal  # change of what the position holds (the fund lock's margin_value)


def fill_book(position: PerpPosition, *, quantity: Decimal, price: Decimal, leverage: Decimal,
              settle_px: Decimal, keep_margin: bool = False) -> Booked:
    """A fill of signed ``quantity`` at ``price`` from an order placed at ``leverage``: a reducing part closes
    at ``price`` (realised PnL as ``position_move`` rules, margin released in proportion, rounded down: the
    position keeps the residue until it is flat), a part beyond the position opens at ``price`` with margin
    ``|part| * price / leverage`` (rounded up). ``keep_margin`` (a liquidation's fill): a reducing part
    releases no margin, its realised PnL goes into the margin instead, so the rest keeps the equity and
    its ratio to its requirement rises (available collateral does not move); all of it is released once
    the position is flat."""
    if not quantity:
        raise ValueError("a fill has a quantity")
    q, margin = position.quantity, position.margin
    moved = position_move(PositionState(q, position.cost, position.realised_pnl), quantity, -quantity * price)
    closing = ZERO if not q or (q > 0) == (quantity > 0) else min(abs(quantity), abs(q))
    if closing == abs(q) and closing:
        margin = ZERO
    elif closing and keep_margin:
        margin += moved.realised_pnl - position.realised_pnl
    elif closing:
        margin -= (margin * closing / abs(q)).quantize(QUANTUM, rounding=ROUND_FLOOR)
    opening = abs(quantity) - closing
    if opening:
        margin += (opening * price / leverage).quantize(QUANTUM, rounding=ROUND_CEILING)
    after = replace(position, quantity=moved.quantity, cost=moved.cost, margin=margin,
                    realised_pnl=moved.realised_pnl)
    return Booked(after, cash=-quantity * (price - settle_px),
                  held_change=after.held(settle_px) - position.held(settle_px))


def variation_book(position: PerpPosition, *, settle_px: Decimal, mark: Decimal) -> Booked:
    """Settle the position to ``mark`` (the perpetual's reference moves from ``settle_px`` to ``mark``):
    cash ``q * (mark - R)``, held up by as much, available unchanged."""
    cash = position.quantity * (mark - settle_px)
    return Booked(position, cash=cash, held_change=position.held(mark) - position.held(settle_px))


def funding_book(position: PerpPosition, *, payment: Decimal) -> Booked:
    """A funding ``payment`` (positive: received): an isolated position's margin takes it (held moves with
    the cash), a cross position's does not (available moves)."""
    if position.mode == ISOLATED:
        return Booked(replace(position, margin=position.margin + payment), cash=payment, held_change=payment)
    return Booked(position, cash=payment, held_change=ZERO)
