"""Margin arithmetic of perpetual contracts: initial and maintenance margin, liquidation and bankruptcy
prices, the mark price and funding. Pure: no ORM, exact Decimal, every rounding named.

Units: a position is a signed quantity ``q`` of the base currency (positive long, negative short; the
contract's lot is its quantity grid), prices are quote per base, money is quote (the collateral).

Settlement against a reference price. Each perpetual has a reference price ``R`` (``settle_px``): a
trade of ``q`` at ``p`` makes the buyer pay ``q * (p - R)`` and the seller receive it (cash movements
summing to zero), and a variation settlement at mark ``M`` pays each open position ``q * (M - R)`` (they
sum to zero: positions of a contract sum to zero) and sets ``R = M``. Whatever ``R`` is, a position's
equity is what its trader expects: its margin plus ``q * (M - entry)``, entry being the average price of
its open quantity (the cash paid at each trade and settlement adds up to exactly that).

Equity and liquidation. The margin ``m`` behind a position, valued at its entry price, is:
- isolated: the position's own margin (what the trader allocated, less funding paid, plus funding
  received and margin added), so a loss never reaches beyond it;
- cross: the client's collateral in the currency outside its isolated margins and dated lockups, plus
  the position's own settled PnL (``q * (entry - R)``) and the PnL of its other cross positions at their
  marks less their maintenance requirements: one formula serves both.
Its equity at mark ``P`` is ``m + q * (P - entry)``; the position is liquidated when equity falls to its
maintenance requirement plus the fee of closing it, ``(mmr + fee) * |q| * P``. Solving for ``P``:

    long  (q = n > 0):  P_liq = (n * entry - m) / (n * (1 - mmr - fee))   (none when <= 0: 1x never liquidates)
    short (q = -n):     P_liq = (n * entry + m) / (n * (1 + mmr + fee))

and the bankruptcy price, where equity is zero: ``entry - m / n`` (long, at least 0) and ``entry + m / n``
(short). Marks are on the tick grid, so a liquidation price is the first mark that liquidates: the
formula rounded to the tick, a long's down and a short's up (the index then fires exactly when the exact
rule does, neither a tick early nor late); bankruptcy prices towards the clearing house (a long's up, a short's down: a
liquidation order never trades beyond the bankruptcy price).

Maintenance rate by position-size tier: the first tier whose ``up_to`` (base quantity, inclusive; None =
no bound) holds ``|q|``; a tier may cap the leverage too.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from ccp.money import QUANTUM

ZERO = Decimal(0)
ONE = Decimal(1)
LONG, SHORT = "long", "short"
# Funding and premium rates are kept to 1e-8 (0.000001%): finer than any venue publishes.
RATE_QUANTUM = Decimal("1e-8")


@dataclass(frozen=True)
class Tier:
    """A maintenance-margin tier: positions up to ``up_to`` base units (None: any size) keep ``rate`` of
    their notional at mark, and open at most at ``max_leverage``."""

    up_to: Decimal | None
    rate: Decimal
    max_leverage: Decimal

    def __post_init__(self) -> None:
        if not ZERO < self.rate < ONE:
            raise ValueError(f"maintenance rate must lie in (0, 1), got {self.rate}")
        if not ONE <= self.max_leverage <= ONE / self.rate:
            raise ValueError(f"max leverage {self.max_leverage} must lie in [1, 1/rate = {ONE / self.rate}]")


def tiers_check(tiers: Sequence[Tier], *, fee_rate: Decimal) -> None:
    """ValueError unless the tiers grow in size and rate (and fall in leverage), the last one has no bound,
    and a position opened
    at a tier's highest leverage starts above its maintenance requirement plus the closing fee."""
    if not tiers or tiers[-1].up_to is not None:
        raise ValueError("tiers must end with one without a bound (up_to None)")
    bounds = [t.up_to for t in tiers[:-1]]
    if any(b is None or b <= 0 for b in bounds) or bounds != sorted(set(bounds)):
        raise ValueError("tier bounds must be positive and strictly increasing")
    rates = [t.rate for t in tiers]
    if rates != sorted(rates):
        raise ValueError("maintenance rates must not fall as positions grow")
    leverages = [t.max_leverage for t in tiers]
    if leverages != sorted(leverages, reverse=True):
        raise ValueError("the highest leverage must not grow as positions grow")
    for tier in tiers:
        if tier.max_leverage * (tier.rate + fee_rate) >= ONE:
            raise ValueError(f"at {tier.max_leverage}x a position would open liquidatable: 1 / leverage must "
                             f"exceed the maintenance rate plus the fee rate ({tier.rate + fee_rate})")


def tier_of(tiers: Sequence[Tier], quantity: Decimal) -> Tier:
    """The tier of a position of ``|quantity|`` base units."""
    size = abs(quantity)
    for tier in tiers:
        if tier.up_to is None or size <= tier.up_to:
            return tier
    raise ValueError("tiers must end with one without a bound")


def initial_margin(*, quantity: Decimal, price: Decimal, leverage: Decimal) -> Decimal:
    """Notional / leverage at storage precision, rounded up (never less than asked)."""
    if leverage < ONE:
        raise ValueError(f"leverage must be at least 1, got {leverage}")
    return (abs(quantity) * price / leverage).quantize(QUANTUM, rounding=ROUND_CEILING)


def maintenance_margin(*, tiers: Sequence[Tier], quantity: Decimal, price: Decimal) -> Decimal:
    """The tier's rate times the notional at ``price``, rounded up."""
    return (tier_of(tiers, quantity).rate * abs(quantity) * price).quantize(QUANTUM, rounding=ROUND_CEILING)


def to_tick(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    """``value`` on the tick grid, rounded as named."""
    return (value / tick).to_integral_value(rounding=rounding) * tick


def liquidation_price(*, quantity: Decimal, entry_px: Decimal, margin: Decimal, rate: Decimal, fee_rate: Decimal,
                      tick: Decimal) -> Decimal | None:
    """The mark at which a position of signed ``quantity`` backed by ``margin`` reaches its maintenance
    requirement plus the closing fee (module docstring): the first mark on the tick grid that liquidates.
    None: a long that no positive price liquidates. ValueError for a flat position."""
    if not quantity:
        raise ValueError("a flat position has no liquidation price")
    n = abs(quantity)
    if quantity > 0:
        price = (n * entry_px - margin) / (n * (ONE - rate - fee_rate))
        price = to_tick(price, tick, ROUND_FLOOR)
        return price if price > 0 else None
    return to_tick((n * entry_px + margin) / (n * (ONE + rate + fee_rate)), tick, ROUND_CEILING)


def margin_call_price(*, quantity: Decimal, entry_px: Decimal, margin: Decimal, rate: Decimal, fee_rate: Decimal,
                      call_ratio: Decimal, tick: Decimal) -> Decimal | None:
    """The first mark on the tick grid at which the position's maintenance plus closing fee reaches
    ``call_ratio`` of its equity (``ccp.perps.liquidation.margin_call``): the liquidation price with the rate
    ``(rate + fee) / call_ratio`` and no fee, so it comes before the liquidation price. None: a long that no
    positive price calls. ``call_ratio`` must lie in (rate + fee, 1]."""
    if not rate + fee_rate < call_ratio <= ONE:
        raise ValueError(f"call ratio {call_ratio} must lie in (rate + fee, 1]")
    return liquidation_price(quantity=quantity, entry_px=entry_px, margin=margin, rate=(rate + fee_rate) / call_ratio,
                             fee_rate=ZERO, tick=tick)


def isolated_triggers(*, quantity: Decimal, cost: Decimal, margin: Decimal, tiers: Sequence[Tier],
                      fee_rate: Decimal, call_ratio: Decimal, tick: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """An isolated position's (liquidation price, margin call price), from its stored quantity, cost (entry =
    cost / quantity) and margin; (None, None) when flat."""
    if not quantity:
        return None, None
    entry, rate = cost / quantity, tier_of(tiers, quantity).rate
    liquidation = liquidation_price(quantity=quantity, entry_px=entry, margin=margin, rate=rate, fee_rate=fee_rate,
                                    tick=tick)
    if rate + fee_rate >= call_ratio:  # a tier this steep has no warning before liquidation
        return liquidation, liquidation
    return liquidation, margin_call_price(quantity=quantity, entry_px=entry, margin=margin, rate=rate,
                                          fee_rate=fee_rate, call_ratio=call_ratio, tick=tick)


def close_bound(*, quantity: Decimal, cost: Decimal, margin: Decimal, free: Decimal, closing: Decimal) -> Decimal:
    """The worst price at which closing ``closing`` (0 < closing <= ``|quantity|``) of a position with ``cost``
    (entry = cost / quantity) and ``margin`` keeps the client's free collateral ``free`` (available, net of
    whatever else is held) at or above zero: closing ``x`` of ``n`` at ``p`` releases ``margin * x / n`` (rounded
    down, as ``ccp.perps.accounting.fill_book`` does) and realises ``x * (p - entry)`` for a long (the other way
    for a short), so a long may sell down to ``entry - (free + released) / x`` and a short buy up to
    ``entry + (free + released) / x``. Exact; the caller puts it on the tick grid towards the clearing house."""
    if not 0 < closing <= abs(quantity):
        raise ValueError(f"closing {closing} must lie in (0, |{quantity}|]")
    released = (margin * closing / abs(quantity)).quantize(QUANTUM, rounding=ROUND_FLOOR)
    room = (free + released) / closing
    entry = cost / quantity
    return entry - room if quantity > 0 else entry + room


def bankruptcy_price(*, quantity: Decimal, entry_px: Decimal, margin: Decimal, tick: Decimal) -> Decimal:
    """The mark at which the position's equity is zero, on the tick grid towards the clearing house: no
    liquidation order trades beyond it."""
    if not quantity:
        raise ValueError("a flat position has no bankruptcy price")
    n = abs(quantity)
    if quantity > 0:
        return max(to_tick(entry_px - margin / n, tick, ROUND_CEILING), ZERO)
    return to_tick(entry_px + margin / n, tick, ROUND_FLOOR)


def equity(*, quantity: Decimal, entry_px: Decimal, margin: Decimal, mark: Decimal) -> Decimal:
    """``margin + q * (mark - entry)``: exact."""
    return margin + quantity * (mark - entry_px)


def liquidatable(*, quantity: Decimal, entry_px: Decimal, margin: Decimal, mark: Decimal, rate: Decimal,
                 fee_rate: Decimal) -> bool:
    """Whether equity at ``mark`` is at or below maintenance plus the closing fee (exact, no ticks)."""
    return equity(quantity=quantity, entry_px=entry_px, margin=margin, mark=mark) <= (
        (rate + fee_rate) * abs(quantity) * mark)


def mark_price(*, index: Decimal, basis: Decimal, tick: Decimal) -> Decimal:
    """Index plus the damped basis, half-even to the tick."""
    return to_tick(index + basis, tick, ROUND_HALF_EVEN)


def basis_damped(*, previous: Decimal, index: Decimal, best_bid: Decimal | None, best_ask: Decimal | None,
                 alpha: Decimal, bound: Decimal) -> Decimal:
    """The basis after one price update: ``previous + alpha * (mid - index - previous)`` where mid is the
    book's mid (the index itself without both a bid and an ask: an empty book pulls the basis to zero),
    then bounded to ``+/- bound * index``; kept at storage precision."""
    mid = (best_bid + best_ask) / 2 if best_bid is not None and best_ask is not None else index
    moved = previous + alpha * (mid - index - previous)
    limit = bound * index
    return min(max(moved, -limit), limit).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def funding_rate(*, premiums: Sequence[Decimal], cap: Decimal) -> Decimal:
    """The interval's rate: the mean of its premium samples ((mark - index) / index at each price update),
    capped at ``+/- cap``, to RATE_QUANTUM half-even. No sample: zero."""
    if not premiums:
        return ZERO
    mean = sum(premiums, ZERO) / len(premiums)
    return min(max(mean, -cap), cap).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def premium(*, mark: Decimal, index: Decimal) -> Decimal:
    return ((mark - index) / index).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def funding_payments(*, positions: dict, mark: Decimal, rate: Decimal) -> tuple[dict, Decimal]:
    """Who pays whom for one funding interval: key -> signed cash (positive: receives). A positive rate
    makes longs pay shorts ``|q| * mark * rate``. Payers pay rounded up, receivers get rounded down (to
    storage precision), so the payments plus the returned residue (>= 0, the clearing house's) sum to
    exactly zero."""
    payments = {}
    with decimal.localcontext() as context:
        context.traps[decimal.Inexact] = False
        for key, quantity in positions.items():
            owed = quantity * mark * rate  # positive: this position pays
            if owed > 0:
                payments[key] = -owed.quantize(QUANTUM, rounding=ROUND_CEILING)
            elif owed < 0:
                payments[key] = (-owed).quantize(QUANTUM, rounding=ROUND_FLOOR)
    residue = -sum(payments.values(), ZERO)
    if residue < 0:
        raise ValueError("funding positions must sum to zero")
    return payments, residue


def protection_price(*, mark: Decimal, slippage_bps: int, long: bool, tick: Decimal) -> Decimal:
    """The worst price an opening order may trade at: ``mark * (1 +/- slippage)``, on the tick grid towards
    the mark (a buy's down, a sell's up: never beyond the trader's slippage)."""
    move = mark * slippage_bps / 10_000
    return to_tick(mark + move, tick, ROUND_FLOOR) if long else to_tick(mark - move, tick, ROUND_CEILING)


def sweep(levels: Sequence[tuple[Decimal, Decimal]], quantity: Decimal) -> tuple[Decimal, Decimal | None]:
    """Fill ``quantity`` against ``levels`` ((price, open quantity), best first): (filled, average price or
    None when nothing fills). The average is exact (a Decimal quotient at the context's precision)."""
    filled, notional = ZERO, ZERO
    for price, available in levels:
        take = min(available, quantity - filled)
        if take <= 0:
            break
        filled += take
        notional += take * price
    return filled, (notional / filled if filled else None)
