"""Perpetuals: listing one, and its mark price at every price update."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair, TradingMode
from ccp.contracts.payoffs import ContractKind, Terms
from ccp.errors import ApplicationError, Conflict
from ccp.locks import contracts_lock
from ccp.money import money_str
from ccp.orders.selectors import books_bbo
from ccp.perps.margin import Tier, basis_damped, mark_price, tiers_check
from ccp.perps.models import MarkPrice, Perpetual
from ccp.prices.selectors import index_by_pair


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
