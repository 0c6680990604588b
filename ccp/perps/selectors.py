"""Reads of perpetuals that several callers need: the fresh mark, the book's depth, an opening estimate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db.models import F, Sum

from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState
from ccp.contracts.payoffs import ContractKind
from ccp.errors import ApplicationError, Conflict, NotFound
from ccp.money import quantize
from ccp.orders.models import Order, Side
from ccp.orders.states import BOOK_STATES, OPEN_STATES
from ccp.perps.margin import (
    LONG,
    RATE_QUANTUM,
    Tier,
    bankruptcy_price,
    initial_margin,
    liquidation_price,
    protection_price,
    sweep,
    tier_of,
)
from ccp.perps.models import Perpetual

MAX_SLIPPAGE_BPS = 1000  # 10%: beyond it a "market" open is a gamble on an empty book


def perpetual_named(symbol: str) -> Perpetual:
    """The listed perpetual ``symbol`` with its contract (404 ``not_found``; 400 ``contract_not_perpetual``
    for a dated contract; 409 ``contract_not_listed`` for one no longer listed)."""
    contract = Contract.objects.filter(symbol=symbol).select_related("perpetual", "pair").first()
    if contract is None:
        raise NotFound(f"No contract {symbol}.", code="unknown_contract")
    if contract.kind != ContractKind.PERPETUAL:
        raise ApplicationError(f"{symbol} is not a perpetual.", code="contract_not_perpetual")
    if contract.state != ContractState.LISTED:
        raise Conflict(f"{symbol} is not listed.", code="contract_not_listed")
    return contract.perpetual


def mark_fresh(perpetual: Perpetual, *, now: datetime) -> Decimal | None:
    """The perpetual's mark if it was set from a fresh index less than CCP_SPOT_STALE_AFTER ago; None
    otherwise. Nothing opens or liquidates without one."""
    if perpetual.mark_px is None or perpetual.marked_at is None:
        return None
    return perpetual.mark_px if require_aware(now) - perpetual.marked_at <= settings.CCP_SPOT_STALE_AFTER else None


def book_depth(*, contract_id: int, side: str, worst_px: Decimal) -> list[tuple[Decimal, Decimal]]:
    """(price, open quantity) of the resting ``side`` orders no worse than ``worst_px`` for a taker, best
    first: the asks up to it, or the bids down to it."""
    orders = Order.objects.filter(contract_id=contract_id, side=side, state__in=BOOK_STATES)
    orders = orders.filter(price__lte=worst_px) if side == Side.SELL else orders.filter(price__gte=worst_px)
    levels = (orders.values("price").annotate(open=Sum(F("quantity") - F("filled_quantity")))
              .order_by("price" if side == Side.SELL else "-price"))
    return [(level["price"], level["open"]) for level in levels if level["open"] > 0]


@dataclass(frozen=True)
class OpenEstimate:
    side: str
    leverage: Decimal
    mark_price: Decimal
    protection_price: Decimal
    quantity: Decimal  # asked: margin x leverage / mark, down to the lot
    filled_quantity: Decimal  # what the book holds within the protection price now
    entry_price: Decimal | None  # at storage precision, half-even
    margin: Decimal  # the filled part's initial margin
    maintenance_rate: Decimal
    liquidation_price: Decimal | None
    bankruptcy_price: Decimal | None


def open_estimate(*, perpetual: Perpetual, side: str, margin: Decimal, leverage: Decimal, slippage_bps: int,
                  now: datetime) -> OpenEstimate:
    """What opening an isolated ``side`` position with ``margin`` at ``leverage`` would do against the book as
    it is: the immediate-or-cancel order of ``margin * leverage / mark`` (down to the lot) protected at
    ``mark * (1 +/- slippage)``, its fill, entry and liquidation price. Refusals (the same as opening):
    ``margin_invalid`` (<= 0), ``slippage_invalid`` (outside 0..1000 bps), ``leverage_invalid`` (outside 1
    up to the size tier's highest), ``margin_too_small`` (not one lot), 409 ``index_stale`` (no fresh mark).
    Your own resting orders count as depth here."""
    contract = perpetual.contract
    if margin <= 0:
        raise ApplicationError("The margin must be positive.", code="margin_invalid")
    if not 0 <= slippage_bps <= MAX_SLIPPAGE_BPS:
        raise ApplicationError(f"The slippage must lie in 0..{MAX_SLIPPAGE_BPS} basis points.",
                               code="slippage_invalid", extra={"max": MAX_SLIPPAGE_BPS})
    tiers = perpetual.tier_list
    if not 1 <= leverage <= tiers[0].max_leverage:
        raise _leverage_refused(tiers[0])
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        raise Conflict(f"{contract.symbol} has no fresh index: nothing opens until one comes.", code="index_stale")
    quantity = (margin * leverage / mark / contract.lot_size).to_integral_value(ROUND_FLOOR) * contract.lot_size
    if quantity <= 0:
        raise ApplicationError(f"margin x leverage buys less than one lot ({contract.lot_size}).",
                               code="margin_too_small", extra={"lot_size": str(contract.lot_size)})
    tier = tier_of(tiers, quantity)
    if leverage > tier.max_leverage:
        raise _leverage_refused(tier)
    long = side == LONG
    worst = protection_price(mark=mark, slippage_bps=slippage_bps, long=long, tick=contract.tick_size)
    filled, entry = sweep(book_depth(contract_id=contract.pk, side=Side.SELL if long else Side.BUY, worst_px=worst),
                          quantity)
    if not filled:
        return OpenEstimate(side=side, leverage=leverage, mark_price=mark, protection_price=worst, quantity=quantity,
                            filled_quantity=filled, entry_price=None, margin=Decimal(0), maintenance_rate=tier.rate,
                            liquidation_price=None, bankruptcy_price=None)
    used = initial_margin(quantity=filled, price=entry, leverage=leverage)
    signed, rate = (filled if long else -filled), tier_of(tiers, filled).rate
    return OpenEstimate(
        side=side, leverage=leverage, mark_price=mark, protection_price=worst, quantity=quantity,
        filled_quantity=filled, entry_price=quantize(entry, ROUND_HALF_EVEN), margin=used, maintenance_rate=rate,
        liquidation_price=liquidation_price(quantity=signed, entry_px=entry, margin=used, rate=rate,
                                            fee_rate=perpetual.liquidation_fee_rate, tick=contract.tick_size),
        bankruptcy_price=bankruptcy_price(quantity=signed, entry_px=entry, margin=used, tick=contract.tick_size))


def _leverage_refused(tier: Tier) -> ApplicationError:
    return ApplicationError(f"The leverage must lie in 1..{tier.max_leverage} for this size.",
                            code="leverage_invalid", extra={"max": str(tier.max_leverage)})


def isolated_liquidation_price(*, perpetual: Perpetual, quantity: Decimal, entry_px: Decimal | None,
                               margin: Decimal) -> Decimal | None:
    """An isolated position's liquidation price (``ccp.perps.margin.liquidation_price``), or None when flat
    or when no positive price liquidates it."""
    if not quantity or entry_px is None:
        return None
    contract = perpetual.contract
    return liquidation_price(quantity=quantity, entry_px=entry_px, margin=margin,
                             rate=tier_of(perpetual.tier_list, quantity).rate,
                             fee_rate=perpetual.liquidation_fee_rate, tick=contract.tick_size)


def isolated_bankruptcy_price(*, perpetual: Perpetual, quantity: Decimal, entry_px: Decimal | None,
                              margin: Decimal) -> Decimal | None:
    """An isolated position's bankruptcy price (``ccp.perps.margin.bankruptcy_price``: its equity is zero
    there), or None when flat."""
    if not quantity or entry_px is None:
        return None
    return bankruptcy_price(quantity=quantity, entry_px=entry_px, margin=margin, tick=perpetual.contract.tick_size)


def isolated_margin_ratio(*, perpetual: Perpetual, quantity: Decimal, entry_px: Decimal | None, margin: Decimal,
                          mark: Decimal | None) -> Decimal | None:
    """An isolated position's requirement over its equity at ``mark``: ``(rate + liquidation fee) x |q| x mark
    / (margin + q x (mark - entry))``, to 1e-8 half-even; at 1 or above the position is liquidated. None when
    flat, without a mark, or when its equity is gone (<= 0)."""
    if not quantity or entry_px is None or mark is None:
        return None
    equity = quantize(margin + quantity * (mark - entry_px))  # at storage precision: the quotient stays storable
    if equity <= 0:
        return None
    rate = tier_of(perpetual.tier_list, quantity).rate + perpetual.liquidation_fee_rate
    return (rate * abs(quantity) * mark / equity).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def tpsl_prefix(contract_id: int) -> str:
    """The start of the client_order_id of a position's take-profit and stop-loss orders
    (``ccp.perps.positions``): "/" is never in a client's own id."""
    return f"position/{contract_id}/"


def positions_tpsl(*, client_id: int, contract_ids) -> dict[int, dict[str, int]]:
    """contract id -> {"tp": order id, "sl": order id} of the client's open position take-profit and stop-loss
    orders in those contracts (the newest of each, should two be open)."""
    found: dict[int, dict[str, int]] = {}
    orders = Order.objects.filter(client_id=client_id, contract_id__in=list(contract_ids), state__in=OPEN_STATES,
                                  client_order_id__startswith="position/").order_by("id")
    for contract_id, order_id, client_order_id in orders.values_list("contract_id", "id", "client_order_id"):
        leg = client_order_id.removeprefix(tpsl_prefix(contract_id)).partition("/")[0]
        if leg in ("tp", "sl"):
            found.setdefault(contract_id, {})[leg] = order_id
    return found
