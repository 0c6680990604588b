"""What a trader does to an open perpetual position besides adding to it (``position_open``): close it, whole or
part; add margin to an isolated one or take some out; set its take-profit and stop-loss.

- A close is a reduce-only immediate-or-cancel market order on the book, protected at the mark
  x (1 -/+ slippage), like an open the other way. Reduce-only, it never opens anything, whatever its margin
  mode (the position's) and leverage (1: it holds nothing).
- Margin moves between the position and the client's available collateral: ``Position.margin`` and the fund
  lock's ``margin_value`` move by the same amount, so available moves by exactly minus it, and the
  liquidation price with it. Taking margin out leaves at least the initial margin of the position at the
  mark at its size tier's highest leverage, less any unrealised loss (``margin_removable``): what the
  position could have been opened with now, never liquidatable (``ccp.perps.margin.tiers_check``: at a
  tier's highest leverage a position starts above its maintenance plus closing fee).
- A position's take-profit and stop-loss are standalone reduce-only trigger orders of the book (``trigger``
  ``take_profit`` / ``stop``), sized to the position when set, their ``client_order_id``
  ``position/<contract id>/tp|sl/<random>`` ("/" is never in a client's own id). Setting them cancels the
  earlier ones of the position. They end with the position: the matcher cancels those still armed when a fill
  closes the position or turns it to the other side, and at its next batch after a takeover or ADL closed it
  (``position_closed``, ``ccp.book.services``), so one left over never closes part of the next position.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction

from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.clock import require_aware
from ccp.errors import ApplicationError, Conflict
from ccp.locks import book_lock, contract_lock, fund_locks_lock, orders_lock, positions_lock
from ccp.money import QUANTUM, ZERO, money_str
from ccp.orders.models import Order, OrderKind, TimeInForce, Trigger
from ccp.orders.services import OrderRequest, order_submit, orders_cancel, orders_submit
from ccp.orders.states import OPEN_STATES
from ccp.perps.accounting import ISOLATED, PerpPosition
from ccp.perps.booking import position_triggers
from ccp.perps.margin import Tier, initial_margin, protection_price, tier_of
from ccp.perps.models import Perpetual
from ccp.perps.selectors import MAX_SLIPPAGE_BPS, book_depth, mark_fresh, tpsl_prefix
from ccp.risk.collateral import available, collateral_covers
from ccp.risk.models import Position

TPSL_SLIPPAGE_BPS = 500  # a stop must close in a fast market: 5% beyond its trigger by default


def _position(client, contract) -> Position:
    """The client's open position in ``contract`` (409 ``position_flat`` when there is none)."""
    position = Position.objects.filter(client=client, contract=contract).first()
    if position is None or not position.quantity:
        raise Conflict(f"You have no position in {contract.symbol}.", code="position_flat")
    return position


def _mark(perpetual: Perpetual, *, now: datetime) -> Decimal:
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        raise Conflict(f"{perpetual.contract.symbol} has no fresh index: try again once one comes.",
                       code="index_stale")
    return mark


def _slippage_check(slippage_bps: int) -> None:
    if not 0 <= slippage_bps <= MAX_SLIPPAGE_BPS:
        raise ApplicationError(f"The slippage must lie in 0..{MAX_SLIPPAGE_BPS} basis points.",
                               code="slippage_invalid", extra={"max": MAX_SLIPPAGE_BPS})


def _closing_price(contract, *, price: Decimal, slippage_bps: int, long: bool) -> Decimal:
    """The worst price a closing order of a ``long`` (or short) position may trade at: ``price`` moved by the
    slippage against the trader (a sell's down, a buy's up), on the tick grid towards ``price``, within the
    contract's price band."""
    worst = protection_price(mark=price, slippage_bps=slippage_bps, long=not long, tick=contract.tick_size)
    return min(max(worst, contract.price_min), contract.price_max)


def perp_position_close(*, client, perpetual: Perpetual, quantity: Decimal | None, slippage_bps: int,
                        client_order_id: str, now: datetime) -> tuple[Order, bool]:
    """Close ``quantity`` of the client's position (all of it when None): a reduce-only immediate-or-cancel
    market order on the other side, protected at mark x (1 -/+ slippage) (within the price band), leverage 1
    and the position's margin mode. Refusals: 409 ``position_flat``, ``quantity_invalid`` (not positive, not
    whole lots, or more than the position: ``extra.max``), ``slippage_invalid``, 409 ``index_stale``, 409
    ``nothing_fillable`` (nothing on the book within the slippage now). Returns ``order_submit``'s (order,
    created); the matcher cuts the order to the position as it then is. Idempotent on ``client_order_id``
    as order entry (the same close again answers its order; a different one ``client_order_id_reused``)."""
    contract = perpetual.contract
    existing = client.orders.filter(client_order_id=client_order_id).first()
    if existing is not None:  # the same close again: order_submit answers its order if it is one
        return order_submit(client=client, now=now, request=OrderRequest(
            client_order_id=client_order_id, contract=contract, side=existing.side, kind=OrderKind.MARKET,
            price=existing.price, quantity=quantity or existing.quantity_requested or existing.quantity,
            time_in_force=TimeInForce.IOC, reduce_only=True, leverage=Decimal(1),
            margin_mode=existing.margin_mode))
    _slippage_check(slippage_bps)
    position = _position(client, contract)
    size = abs(position.quantity)
    if quantity is not None and not (0 < quantity <= size and quantity % contract.lot_size == 0):
        raise ApplicationError(f"The quantity to close must be whole lots of {contract.lot_size}, at most the "
                               f"position ({money_str(size)}).", code="quantity_invalid",
                               extra={"lot_size": money_str(contract.lot_size), "max": money_str(size)})
    long = position.quantity > 0
    worst = _closing_price(contract, price=_mark(perpetual, now=now), slippage_bps=slippage_bps, long=long)
    side = "sell" if long else "buy"
    if not book_depth(contract_id=contract.pk, side="buy" if long else "sell", worst_px=worst):
        raise Conflict(f"Nothing on the book of {contract.symbol} within {slippage_bps} basis points of the mark.",
                       code="nothing_fillable", extra={"protection_price": money_str(worst)})
    return order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=client_order_id, contract=contract, side=side, kind=OrderKind.MARKET, price=worst,
        quantity=quantity or size, time_in_force=TimeInForce.IOC, reduce_only=True, leverage=Decimal(1),
        margin_mode=position.margin_mode))


def margin_removable(*, quantity: Decimal, cost: Decimal, margin: Decimal, mark: Decimal, tier: Tier) -> Decimal:
    """The most margin an isolated position of signed ``quantity`` and ``cost`` may give back at ``mark``: what
    keeps its margin, less any unrealised loss, at the initial margin of its notional at the mark at its
    tier's highest leverage (rounded up); at storage precision rounded down, never negative. Pure."""
    loss = min(ZERO, quantity * mark - cost)  # unrealised PnL when negative: a profit is not given out
    keep = initial_margin(quantity=quantity, price=mark, leverage=tier.max_leverage)
    return max(ZERO, (margin + loss - keep).quantize(QUANTUM, rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class MarginAdjusted:
    position: Position
    available: Decimal  # the client's available collateral in the perpetual's currency after it


@transaction.atomic
def position_margin_adjust(*, client, contract, amount: Decimal, now: datetime) -> MarginAdjusted:
    """Add ``amount`` (positive) of the client's available collateral to its isolated position in the perpetual
    ``contract``, or take ``-amount`` out of it: the position's margin and the fund lock's margin value move
    together (available by exactly ``-amount``). Refusals: ``amount_invalid`` (zero), 409 ``position_flat``,
    409 ``position_not_isolated`` (a cross position's margin is the account's), 409 ``insufficient_collateral``
    (adding more than available, ``extra.available``), 409 ``index_stale`` (taking out without a fresh mark),
    409 ``margin_remove_too_large`` (beyond ``margin_removable``, ``extra.max``). Locks (``ccp.locks``) the
    contract (3: serial with the matcher, funding and the liquidation engine on it), the fund lock (5), the
    position (6); the balance event goes out after commit. Not idempotent: each call moves margin."""
    require_aware(now)
    if not amount:
        raise ApplicationError("The amount must not be zero: positive adds margin, negative removes it.",
                               code="amount_invalid")
    contract = contract_lock(contract.pk)
    perpetual = Perpetual.objects.get(contract=contract)
    perpetual.contract = contract
    key = (client.pk, contract.collateral_id)
    fund_lock = fund_locks_lock(keys=[key]).get(key)
    position = next(iter(positions_lock(Position.objects.filter(client=client, contract=contract))), None)
    if position is None or not position.quantity:
        raise Conflict(f"You have no position in {contract.symbol}.", code="position_flat")
    if position.margin_mode != ISOLATED:
        raise Conflict("Only an isolated position has a margin of its own: a cross position is backed by the "
                       "account.", code="position_not_isolated")
    if amount > 0 and not collateral_covers(fund_lock, amount):
        raise Conflict("Available collateral does not cover the margin to add.", code="insufficient_collateral",
                       extra={"available": money_str(available(fund_lock) if fund_lock else ZERO)})
    if amount < 0:
        most = margin_removable(quantity=position.quantity, cost=position.cost, margin=position.margin,
                                mark=_mark(perpetual, now=now), tier=tier_of(perpetual.tier_list, position.quantity))
        if -amount > most:
            raise Conflict("Taking this much out would leave the position below its initial margin at the mark.",
                           code="margin_remove_too_large", extra={"max": money_str(most)})
    position.margin += amount
    triggers = position_triggers(PerpPosition(quantity=position.quantity, cost=position.cost, margin=position.margin,
                                              mode=ISOLATED), perpetual, contract)
    for name, value in triggers.items():
        setattr(position, name, value)
    position.margin_called_at, position.updated_at = None, now
    position.save(update_fields=["margin", *triggers, "margin_called_at", "updated_at"])
    fund_locks = fund_locks_adjust(settle_value={}, order_value={}, lockup_value={}, margin_value={key: amount},
                                   now=now, locked={key: fund_lock})
    balances_publish(fund_locks.values())
    position.contract = contract
    return MarginAdjusted(position=position, available=available(fund_locks[key]))


@dataclass(frozen=True)
class TpSlSet:
    take_profit: Order | None
    stop_loss: Order | None
    cancelled: list[Order]  # the position's earlier take-profit and stop-loss


@transaction.atomic
def position_tpsl_set(*, client, perpetual: Perpetual, take_profit: Decimal | None, stop_loss: Decimal | None,
                      trigger_source: str, slippage_bps: int, now: datetime) -> TpSlSet:
    """Set the take-profit and stop-loss of the client's position in the perpetual: each a standalone reduce-only
    market trigger order for the whole position (module docstring), on the other side, firing when
    ``trigger_source`` reaches its price and protected at that price moved ``slippage_bps`` against the trader.
    The position's earlier ones are cancelled (reason ``tpsl_replaced``): a call sets both, one of them, or
    none (cancels both). Refusals: 409 ``position_flat``, 409 ``index_stale``, ``slippage_invalid``,
    ``trigger_price_invalid`` (a take-profit not beyond the mark in the position's favour, a stop-loss not
    beyond it against; ``extra.field``, ``extra.mark_price``), the order rules' (``trigger_invalid``: off the
    tick grid or the price band). Locks (``ccp.locks``) the book (shared), the contract, the earlier orders;
    the new orders are queued for the matcher after commit, which arms them."""
    require_aware(now)
    _slippage_check(slippage_bps)
    contract = perpetual.contract
    book_lock(contract.pair_id, exclusive=False)
    contract = contract_lock(contract.pk)
    perpetual = Perpetual.objects.get(contract=contract)
    perpetual.contract = contract
    position = _position(client, contract)
    mark, long = _mark(perpetual, now=now), position.quantity > 0
    for field, price, above in (("take_profit", take_profit, long), ("stop_loss", stop_loss, not long)):
        if price is not None and not (price > mark if above else price < mark):
            raise ApplicationError(f"A {field.replace('_', '-')} of a {'long' if long else 'short'} position must "
                                   f"lie {'above' if above else 'below'} the mark ({money_str(mark)}).",
                                   code="trigger_price_invalid",
                                   extra={"field": field, "mark_price": money_str(mark)})
    earlier = orders_lock(Order.objects.filter(client=client, contract=contract, state__in=OPEN_STATES,
                                               client_order_id__startswith=tpsl_prefix(contract.pk)))
    for order in earlier:
        order.contract = contract
    cancelled = orders_cancel(orders=earlier, now=now, reason="tpsl_replaced")
    legs = [(leg, trigger, price) for leg, trigger, price in (("tp", Trigger.TAKE_PROFIT, take_profit),
                                                               ("sl", Trigger.STOP, stop_loss)) if price is not None]
    requests = [OrderRequest(
        client_order_id=f"{tpsl_prefix(contract.pk)}{leg}/{uuid.uuid4().hex[:20]}", contract=contract,
        side="sell" if long else "buy", kind=OrderKind.MARKET,
        price=_closing_price(contract, price=price, slippage_bps=slippage_bps, long=long),
        quantity=abs(position.quantity), time_in_force=TimeInForce.IOC, reduce_only=True, trigger=trigger,
        trigger_price=price, trigger_source=trigger_source, leverage=Decimal(1), margin_mode=position.margin_mode)
        for leg, trigger, price in legs]
    entered = dict(zip((leg for leg, _, _ in legs), orders_submit(client=client, requests=requests, now=now),
                       strict=True))
    for outcome in entered.values():
        if isinstance(outcome, ApplicationError):
            raise outcome  # the whole call is undone: the earlier ones stay
    return TpSlSet(take_profit=entered["tp"][0] if "tp" in entered else None,
                   stop_loss=entered["sl"][0] if "sl" in entered else None, cancelled=cancelled)
