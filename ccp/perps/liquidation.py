"""The liquidation rules of perpetual positions: how much a partial liquidation takes, when a margin call goes
out, and who auto-deleveraging reaches first. Pure: no ORM, exact Decimal.

A position below its maintenance requirement (``ccp.perps.margin.liquidatable``) is reduced, not closed,
when a part is enough: the liquidation engine takes the smallest quantity ``x`` (whole lots) such that,
closing ``x`` at the mark and paying the liquidation fee on it, the rest of the position is back at
``target`` times its maintenance requirement plus closing fee (``target`` > 1: a position reduced to
exactly its maintenance would be liquidated again by the next tick). With equity ``E``, quantity ``n``,
mark ``M``, rate ``r`` and fee ``f``, closing ``x`` at the mark keeps the equity (its PnL is realised into
the margin behind it) less the fee ``f * x * M``, and needs ``target * (r + f) * (n - x) * M``:

    x >= (target * (r + f) * n * M - E) / (M * (target * (r + f) - f))

rounded up to the lot; all of it when that reaches ``n`` (or equity is already at or below the fee of
closing everything).

A margin call goes out when the maintenance requirement plus closing fee reaches ``call_ratio`` (e.g. 80%)
of equity: equity is then only 1 / ``call_ratio`` (1.25x) of what liquidation leaves it.

Auto-deleveraging, when the insurance fund cannot cover a bankrupt position's loss: the opposite positions
are ranked by profit ratio times effective leverage (unrealised PnL / margin x notional / margin, the
position whose profit the clearing house's loss would take least unfairly from first), ties by larger
size then key; each is closed against the bankrupt position at its bankruptcy price, in that order, until
the loss is covered. The ranking is disclosed to traders as their ADL quantile.

The waterfall, whatever found the position (``Candidate``: an isolated position, or a cross position with
its share of the account): a reduce-only order on the book first; its fills pay the liquidation fee
(``liquidation_fee``: the rate of the filled notional, rounded up, capped at what the position's equity has
left at the fill price). What the book cannot take (the order's leftover, with the position still
liquidatable at the next check), or a position already at or beyond its bankruptcy price, the insurance fund
takes over at the bankruptcy price as far as it can afford (``takeover_size``); the rest is auto-deleveraged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ccp.money import QUANTUM

ZERO = Decimal(0)


def liquidation_size(*, quantity: Decimal, equity: Decimal, mark: Decimal, rate: Decimal, fee_rate: Decimal,
                     lot: Decimal, target: Decimal) -> Decimal:
    """The quantity (positive, whole lots, at most ``|quantity|``) a liquidation of the position takes now."""
    if target <= 1:
        raise ValueError(f"target must exceed 1, got {target}")
    n = abs(quantity)
    need = target * (rate + fee_rate)
    if equity <= fee_rate * n * mark:
        return n
    size = (need * n * mark - equity) / (mark * (need - fee_rate))
    if size <= 0:
        return ZERO
    lots = (size / lot).to_integral_value(rounding=ROUND_CEILING) * lot
    return min(lots, n)


def margin_call(*, quantity: Decimal, equity: Decimal, mark: Decimal, rate: Decimal, fee_rate: Decimal,
                call_ratio: Decimal) -> bool:
    """Whether maintenance plus closing fee has reached ``call_ratio`` of equity (or equity is gone)."""
    requirement = (rate + fee_rate) * abs(quantity) * mark
    return equity <= 0 or requirement >= call_ratio * equity


@dataclass(frozen=True)
class Counterparty:
    key: int
    quantity: Decimal  # signed
    unrealised_pnl: Decimal  # at the mark
    margin: Decimal  # what backs it (isolated margin, or its cross share)
    notional: Decimal  # |quantity| x mark


def adl_ranking(candidates: Iterable[Counterparty]) -> list[Counterparty]:
    """Profitable positions in ADL order: profit ratio x effective leverage, highest first; ties by larger
    size, then key. A position without profit, or without margin, is never deleveraged before one
    with."""
    def score(c: Counterparty) -> Decimal:
        return (c.unrealised_pnl / c.margin) * (c.notional / c.margin)

    ranked = [c for c in candidates if c.unrealised_pnl > 0 and c.margin > 0]
    return sorted(ranked, key=lambda c: (-score(c), -abs(c.quantity), c.key))


def adl_fills(ranked: Iterable[Counterparty], *, quantity: Decimal) -> list[tuple[int, Decimal]]:
    """(key, quantity) closed against a bankrupt position of ``|quantity|`` left over, in ranking order:
    each takes what it holds until nothing is left."""
    left, fills = abs(quantity), []
    for counterparty in ranked:
        if left <= 0:
            break
        take = min(abs(counterparty.quantity), left)
        fills.append((counterparty.key, take))
        left -= take
    return fills


@dataclass(frozen=True)
class Candidate:
    """A position the liquidation engine found at or below its requirement at the mark, as the finder of its
    margin mode saw it; processing it (order, takeover, ADL, fee) does not depend on that mode."""

    client_id: int
    contract_id: int
    position_id: int
    quantity: Decimal  # signed
    entry_px: Decimal
    margin: Decimal  # what backs it: the isolated margin, or the cross position's share of the account
    equity: Decimal  # margin + quantity x (mark - entry)
    requirement: Decimal  # (maintenance rate + fee rate) x notional at the mark
    size: Decimal  # what to close now (liquidation_size)
    bankruptcy_px: Decimal  # within the price band
    mode: str  # "isolated" or "cross"


def liquidation_fee(*, quantity: Decimal, price: Decimal, fee_rate: Decimal, equity: Decimal | None) -> Decimal:
    """The fee of a liquidation fill of ``|quantity|`` at ``price``: ``fee_rate`` of the notional, rounded up to
    storage precision, capped at ``equity`` (what the position has left at the fill price, rounded down;
    None: no cap), never below zero."""
    fee = (fee_rate * abs(quantity) * price).quantize(QUANTUM, rounding=ROUND_CEILING)
    if equity is not None:
        fee = min(fee, equity.quantize(QUANTUM, rounding=ROUND_FLOOR))
    return max(fee, ZERO)


def takeover_size(*, available: Decimal, quantity: Decimal, bankruptcy_px: Decimal, mark: Decimal,
                  leverage: Decimal, lot: Decimal) -> Decimal:
    """How much of a position of signed ``quantity`` the insurance fund takes over at ``bankruptcy_px``: the
    most whole lots ``x`` (at most ``|quantity|``) whose initial margin at ``leverage`` plus the loss the fund
    takes on at ``mark`` it can pay from ``available``: ``x * (B / L + loss per unit) <= available``, the loss
    per unit being ``B - M`` for a long taken over (``M - B`` for a short), none when the mark is the fund's
    way."""
    n = abs(quantity)
    if available <= 0 or not n:
        return ZERO
    loss = max(bankruptcy_px - mark if quantity > 0 else mark - bankruptcy_px, ZERO)
    per_unit = bankruptcy_px / leverage + loss
    if per_unit <= 0:
        return n
    lots = min((available / per_unit / lot).to_integral_value(rounding=ROUND_FLOOR) * lot, n)
    # The margin is booked rounded up to storage precision: never a lot the rounding would not cover.
    while lots > 0 and (lots * bankruptcy_px / leverage).quantize(QUANTUM, rounding=ROUND_CEILING) + lots * loss \
            > available:
        lots -= lot
    return lots
