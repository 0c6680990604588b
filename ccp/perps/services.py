"""Perpetuals: listing one, its mark price at every price update, and its variation and funding at each
funding time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair, TradingMode
from ccp.contracts.payoffs import ContractKind, Terms
from ccp.errors import ApplicationError, Conflict
from ccp.locks import contract_lock, contracts_lock, perp_position_rows_lock
from ccp.money import ZERO, money_str, quantize
from ccp.orders.selectors import books_bbo
from ccp.orders.services import OrderRequest, order_submit
from ccp.orders.states import OPEN_STATES
from ccp.perps.accounting import ISOLATED, PerpPosition, funding_book, variation_book
from ccp.perps.booking import position_triggers
from ccp.perps.liquidation import liquidation_size
from ccp.perps.margin import (
    LONG,
    Tier,
    bankruptcy_price,
    basis_damped,
    funding_payments,
    funding_rate,
    liquidatable,
    mark_price,
    premium,
    tier_of,
    tiers_check,
)
from ccp.perps.models import Liquidation, MarkPrice, Perpetual
from ccp.perps.selectors import mark_fresh, open_estimate
from ccp.prices.selectors import index_by_pair
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement, CashMovementOrigin


@transaction.atomic
def perpetual_list(*, pair: Pair, collateral: Currency, tick_size: Decimal, lot_size: Decimal, floor_px: Decimal,
                   cap_px: Decimal, tiers: Sequence[Tier], liquidation_fee_rate: Decimal, funding_cap: Decimal,
                   now: datetime) -> Contract:
    """List the pair's perpetual (``<BASE>-<QUOTE>-PERP``), trading continuously from now: its price band
    [floor, cap], grid, maintenance tiers (``ccp.perps.margin.tiers_check``: sizes and rates growing,
    leverage falling, none opening liquidatable), liquidation fee and funding cap. One per pair
    (``perpetual_exists``)."""
    require_aware(now)
    if collateral != pair.quote:
        raise ApplicationError(f"Collateral must be the pair's quote currency ({pair.quote}).",
                               code="contract_collateral_not_quote")
    if tick_size <= 0 or lot_size <= 0:
        raise ApplicationError("Tick and lot sizes must be positive.", code="contract_grid_invalid")
    try:
        Terms(kind=ContractKind.PERPETUAL, floor=floor_px, cap=cap_px)
        tiers_check(tiers, fee_rate=liquidation_fee_rate)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(str(exc), code="contract_terms_invalid") from exc
    if not (0 <= liquidation_fee_rate < Decimal("0.1") and 0 <= funding_cap < Decimal("0.1")):
        raise ApplicationError("Fee and funding cap rates must lie in [0, 0.1).", code="contract_terms_invalid")
    symbol = Contract.symbol_for(pair=pair, expiry_date=None, kind=ContractKind.PERPETUAL, strike_px=None)
    try:
        with transaction.atomic():
            contract = Contract.objects.create(
                symbol=symbol, pair=pair, collateral=collateral, kind=ContractKind.PERPETUAL, expiry_date=None,
                floor_px=floor_px, cap_px=cap_px, tick_size=tick_size, lot_size=lot_size,
                trading_mode=TradingMode.CONTINUOUS)
    except IntegrityError:
        raise Conflict(f"{symbol} is listed already.", code="perpetual_exists", extra={"contract": symbol}) from None
    Perpetual.objects.create(
        contract=contract, liquidation_fee_rate=liquidation_fee_rate, funding_cap=funding_cap,
        tiers=[{k: (None if v is None else money_str(v)) for k, v in asdict(tier).items()} for tier in tiers])
    return contract


@transaction.atomic
def perpetual_marks_update(*, now: datetime) -> list[MarkPrice]:
    """Every listed perpetual's mark at ``now``: the pair's index (median of fresh venue prices,
    ``ccp.prices.selectors.index_prices``), the basis damped towards the book's mid
    (``ccp.perps.margin.basis_damped``), the mark on the tick grid; one ``MarkPrice`` row each. Without a
    fresh index the perpetual has no mark (``mark_px`` empty): nothing opens or liquidates on it until
    one comes (the stale-price alert of the pair is raised by the price loop). Locks the perpetuals'
    contract rows (``ccp.locks`` 3). Safe to run twice: a second run at the same ``now`` stores nothing."""
    now = require_aware(now)
    contracts = contracts_lock(Contract.objects.filter(kind=ContractKind.PERPETUAL, state=ContractState.LISTED))
    if not contracts:
        return []
    perpetuals = Perpetual.objects.in_bulk(list(contracts))
    index = index_by_pair(now=now)
    bbo = books_bbo(contract_ids=list(contracts))
    stored = []
    for contract_id, contract in contracts.items():
        perpetual = perpetuals[contract_id]
        if perpetual.marked_at is not None and perpetual.marked_at >= now:
            continue  # this update (or a later one) is in already
        index_px = index.get(contract.pair_id)
        perpetual.marked_at = now
        if index_px is None:
            perpetual.index_px = perpetual.mark_px = None
        else:
            book = bbo[contract_id]
            perpetual.basis = basis_damped(previous=perpetual.basis, index=index_px, best_bid=book["bid"],
                                           best_ask=book["ask"], alpha=perpetual.basis_alpha,
                                           bound=perpetual.basis_bound)
            perpetual.index_px = index_px
            # At least one tick: an index below half a tick would round the mark to zero.
            perpetual.mark_px = max(mark_price(index=index_px, basis=perpetual.basis, tick=contract.tick_size),
                                    contract.tick_size)
            stored.append(MarkPrice(contract_id=contract_id, at=now, index_px=index_px, basis=perpetual.basis,
                                    mark_px=perpetual.mark_px))
        perpetual.save(update_fields=["index_px", "basis", "mark_px", "marked_at"])
    MarkPrice.objects.bulk_create(stored)
    return stored


def funding_time(now: datetime) -> datetime:
    """The latest funding time at or before ``now``: every CCP_FUNDING_INTERVAL_HOURS from 00:00 UTC."""
    hours = settings.CCP_FUNDING_INTERVAL_HOURS
    return require_aware(now).replace(hour=now.hour - now.hour % hours, minute=0, second=0, microsecond=0)


def perpetuals_fund(*, now: datetime) -> list[str]:
    """Settle every listed perpetual whose latest funding time has not been settled yet
    (``perpetual_fund``); one transaction each. Returns the symbols settled."""
    at = funding_time(now)
    due = Perpetual.objects.filter(contract__state=ContractState.LISTED).filter(
        Q(funded_at__isnull=True) | Q(funded_at__lt=at)).values_list("contract_id", flat=True)
    return [symbol for contract_id in sorted(due) if (symbol := perpetual_fund(contract_id=contract_id, at=at,
                                                                                now=now))]


@transaction.atomic
def perpetual_fund(*, contract_id: int, at: datetime, now: datetime) -> str | None:
    """At funding time ``at``, settle every open position of the perpetual to its mark ``M`` and pay its
    funding (``ccp.perps.accounting``): variation ``q x (M - R)`` (then ``R = M``) and funding at the rate of
    the interval's mean premium, capped (``ccp.perps.margin.funding_rate``; longs pay shorts when positive).
    Each is a cash movement (origins ``variation`` and ``funding``, ref ``<symbol>@<at>``) summing to zero:
    payers round up, receivers down, and the rounding residue goes to the largest receiver. An isolated
    position's margin takes its funding; the fund locks' margin values move with what the positions hold.
    Without a fresh mark nothing is settled and the next run tries again (returns None). Locks the
    contract (3), the fund locks (5), the positions (6). Idempotent: a funding time settled is not again."""
    require_aware(now)
    contract = contract_lock(contract_id)
    perpetual = Perpetual.objects.get(contract=contract)
    if perpetual.funded_at is not None and perpetual.funded_at >= at:
        return None
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        return None
    ref = f"{contract.symbol}@{at.isoformat()}"
    start = at - timedelta(hours=settings.CCP_FUNDING_INTERVAL_HOURS)
    premiums = [premium(mark=m.mark_px, index=m.index_px) for m in MarkPrice.objects.filter(
        contract=contract, at__gt=start, at__lte=at)]
    rate = funding_rate(premiums=premiums, cap=perpetual.funding_cap)
    client_ids = set(Position.objects.filter(contract=contract).exclude(quantity=0).values_list("client_id", flat=True))
    settle_px = perpetual.settle_px
    rows = perp_position_rows_lock(client_ids, [contract_id]) if client_ids and settle_px is not None else []
    positions = {c: PerpPosition(quantity=q, cost=cost, margin=margin, mode=mode, realised_pnl=realised)
                 for c, _, q, cost, realised, mode, margin in rows if q}
    payments, residue = funding_payments(positions={c: p.quantity for c, p in positions.items()}, mark=mark,
                                         rate=rate)
    if residue:  # to the largest receiver: the payments sum to exactly zero
        # (a receiver whose share rounded down to 0 is still one: positions sum to zero, so one exists)
        largest = max((c for c, amount in payments.items() if amount >= 0), key=lambda c: (payments[c], -c))
        payments[largest] += residue
    movements, settle, held, changed = [], defaultdict(Decimal), defaultdict(Decimal), []
    for client_id, position in sorted(positions.items()):
        key = (client_id, contract.collateral_id)
        variation = variation_book(position, settle_px=settle_px, mark=mark)
        funded = funding_book(position, payment=payments.get(client_id, ZERO))
        for origin, amount in ((CashMovementOrigin.VARIATION, variation.cash), (CashMovementOrigin.FUNDING,
                                                                                 funded.cash)):
            if amount:
                movements.append(CashMovement(client_id=client_id, currency_id=contract.collateral_id,
                                              contract=contract, amount=amount, origin=origin, origin_ref=ref,
                                              created_at=now))
                settle[key] += amount
        held[key] += variation.held_change + funded.held_change
        if funded.position.margin != position.margin:
            changed.append((client_id, funded.position))
    CashMovement.objects.bulk_create(movements)
    for client_id, funded_position in changed:  # an isolated position's margin took its funding
        Position.objects.filter(client_id=client_id, contract=contract).update(
            margin=funded_position.margin, **position_triggers(funded_position, perpetual, contract), updated_at=now)
    perpetual.settle_px = mark if positions else perpetual.settle_px
    perpetual.funded_at = at
    perpetual.save(update_fields=["settle_px", "funded_at"])
    if settle or held:
        balances_publish(fund_locks_adjust(settle_value=dict(settle), order_value={}, lockup_value={},
                                           margin_value=dict(held), now=now).values())
    return contract.symbol


def position_open(*, client, perpetual: Perpetual, side: str, margin: Decimal, leverage: Decimal,
                  slippage_bps: int, client_order_id: str, now: datetime):
    """Open (or add to) an isolated position the way the seed's traders do: an immediate-or-cancel market
    order for ``margin x leverage / mark`` (down to the lot), protected at ``mark x (1 +/- slippage)``, with
    the refusals of ``ccp.perps.selectors.open_estimate`` and 409 ``nothing_fillable`` when the book holds
    nothing within the slippage now. Returns ``order_submit``'s (order, created): the matcher fills it (or
    rejects it, e.g. ``insufficient_collateral``). Idempotent on ``client_order_id`` as order entry."""
    existing = client.orders.filter(client_order_id=client_order_id).select_related("contract").first()
    if existing is not None:  # the same open again: order_submit answers with it (or client_order_id_reused)
        request = OrderRequest(client_order_id=client_order_id, contract=perpetual.contract, side=existing.side,
                               kind=existing.kind, price=existing.price, quantity=existing.quantity,
                               time_in_force=existing.time_in_force, leverage=existing.leverage,
                               margin_mode=existing.margin_mode)
        return order_submit(client=client, request=request, now=now)
    estimate = open_estimate(perpetual=perpetual, side=side, margin=margin, leverage=leverage,
                             slippage_bps=slippage_bps, now=now)
    if not estimate.filled_quantity:
        raise Conflict(f"Nothing on the book of {perpetual.contract.symbol} within {slippage_bps} basis points of "
                       f"the mark ({estimate.mark_price}).", code="nothing_fillable",
                       extra={"protection_price": money_str(estimate.protection_price)})
    return order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=client_order_id, contract=perpetual.contract, side="buy" if side == LONG else "sell",
        kind="market", price=estimate.protection_price, quantity=estimate.quantity, time_in_force="ioc",
        leverage=leverage, margin_mode="isolated"))


LIQUIDATION_TARGET = Decimal("1.5")  # a partial liquidation restores 1.5x the requirement (ccp.perps.liquidation)


@transaction.atomic
def perpetual_liquidations_enter(*, contract_id: int, now: datetime) -> list[Liquidation]:
    """Find the perpetual's isolated positions at or below their maintenance requirement plus closing fee at
    the current mark (``ccp.perps.margin.liquidatable``) and enter, for each, a reduce-only immediate-or-cancel
    market order for the fewest lots that restore 1.5x the requirement (all of it when that is not enough,
    ``ccp.perps.liquidation.liquidation_size``), protected at the position's bankruptcy price (within the
    price band): the matcher fills it as any order, never beyond that price. A ``Liquidation`` row keeps
    each step. Nothing happens without a mark from a fresh index. A position with a liquidation order
    still open gets no second one. Locks the contract (3); the orders go through ``order_submit`` (queued
    for the matcher after commit). Safe to run twice: the client_order_id names the position and the
    mark's time."""
    contract = contract_lock(contract_id)
    perpetual = Perpetual.objects.get(contract=contract)
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        return []
    tiers, fee = perpetual.tier_list, perpetual.liquidation_fee_rate
    pending = set(Liquidation.objects.filter(contract=contract, order__state__in=OPEN_STATES)
                  .values_list("client_id", flat=True))
    found = []
    for position in Position.objects.filter(contract=contract, margin_mode=ISOLATED).exclude(quantity=0).select_related(
            "client").order_by("id"):
        q, entry = position.quantity, position.cost / position.quantity
        rate = tier_of(tiers, q).rate
        if position.client_id in pending or not liquidatable(quantity=q, entry_px=entry, margin=position.margin,
                                                               mark=mark, rate=rate, fee_rate=fee):
            continue
        equity = position.margin + q * (mark - entry)
        size = liquidation_size(quantity=q, equity=equity, mark=mark, rate=rate, fee_rate=fee,
                                lot=contract.lot_size, target=LIQUIDATION_TARGET)
        worst = bankruptcy_price(quantity=q, entry_px=entry, margin=position.margin, tick=contract.tick_size)
        worst = min(max(worst, contract.price_min), contract.price_max)
        order, _ = order_submit(client=position.client, now=now, request=OrderRequest(
            client_order_id=f"liq-{position.pk}-{perpetual.marked_at:%Y%m%dT%H%M%S%f}", contract=contract,
            side="sell" if q > 0 else "buy", kind="market", price=worst, quantity=size, time_in_force="ioc",
            reduce_only=True, leverage=Decimal(1), margin_mode=ISOLATED))
        liquidation, _ = Liquidation.objects.get_or_create(order=order, defaults={
            "contract": contract, "client_id": position.client_id, "mark_px": mark, "quantity": q,
            "equity": quantize(equity), "requirement": quantize((rate + fee) * abs(q) * mark, ROUND_CEILING),
            "size": size, "bankruptcy_px": worst, "at": now})
        found.append(liquidation)
    return found
