"""Booking a venue's fills on perpetuals: the clearing core's step for margined positions
(``ccp.clearing.booking.trades_clear`` calls it with the fills of its perpetual contracts).

Each fill goes through ``ccp.perps.accounting.fill_book`` in trade order: cash relative to the
perpetual's reference price R (the first trade's price sets R when it has none), the position's quantity,
cost, realised PnL and margin (taken at the order's leverage for the part that opens). A flat position
takes the margin mode of the order that opens it; while it is open, its own mode holds whatever later
orders say. Nothing is locked up: the fund lock's ``margin_value`` moves by what the positions hold.

Locks (``ccp.locks``): the positions (6); the caller holds the contracts (3), which guard their
``Perpetual`` rows (every writer of R holds the contract's row).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from ccp.contracts.models import Contract
from ccp.db import bulk_upsert_rows
from ccp.locks import perp_position_rows_lock
from ccp.money import ZERO
from ccp.perps.accounting import ISOLATED, PerpPosition, fill_book
from ccp.perps.margin import isolated_triggers
from ccp.perps.models import Liquidation, Perpetual
from ccp.risk.models import Position

# (client, contract) -> its fills in trade order: (signed quantity, price, the order's leverage and margin mode,
# whether the order is a liquidation's)
Fills = Mapping[tuple[int, int], Sequence[tuple[Decimal, Decimal, Decimal, str, bool]]]


@dataclass
class PerpsBooked:
    lines: dict[tuple[int, int], tuple[Decimal, Decimal]]  # (client, contract) -> (cash, position change)
    margin: dict[tuple[int, int], Decimal]  # (client, currency) -> change of the fund lock's margin_value
    rows: list[dict]  # the changed positions, as ccp.clearing.booking's position rows


def perp_fills_book(*, fills: Fills, contracts: Mapping[int, Contract], now: datetime) -> PerpsBooked:
    """Book ``fills`` (see the module docstring); the caller writes the cash lines and the fund locks."""
    booked = PerpsBooked({}, defaultdict(Decimal), [])
    if not fills:
        return booked
    contract_ids = sorted({contract_id for _, contract_id in fills})
    perpetuals = Perpetual.objects.in_bulk(contract_ids)
    for contract_id in contract_ids:  # the first trade of a perpetual sets its reference price
        perpetual = perpetuals[contract_id]
        if perpetual.settle_px is None:
            perpetual.settle_px = next(price for (_, c), changes in sorted(fills.items()) if c == contract_id
                                       for _, price, *_ in changes)
            perpetual.save(update_fields=["settle_px"])
    positions = {(c, k): PerpPosition(quantity=q, cost=cost, margin=margin, mode=mode, realised_pnl=realised)
                 for c, k, q, cost, realised, mode, margin in perp_position_rows_lock(
                     {c for c, _ in fills}, contract_ids)}
    for key, changes in sorted(fills.items()):
        contract = contracts[key[1]]
        settle_px = perpetuals[key[1]].settle_px
        position = positions.get(key) or PerpPosition()
        cash, moved = ZERO, ZERO
        for quantity, price, leverage, mode, liquidation in changes:
            if not position.quantity:  # a flat position takes the order's mode
                position = PerpPosition(mode=mode, realised_pnl=position.realised_pnl)
            result = fill_book(position, quantity=quantity, price=price, leverage=leverage, settle_px=settle_px,
                               keep_margin=liquidation)
            position, cash, moved = result.position, cash + result.cash, moved + quantity
            booked.margin[(key[0], contract.collateral_id)] += result.held_change
        booked.lines[key] = (cash, moved)
        booked.rows.append({"client_id": key[0], "contract_id": key[1], "quantity": position.quantity,
                            "cost": position.cost, "entry_price": position.entry_shown,
                            "realised_pnl": position.realised_pnl,
                            "margin_mode": position.mode if position.quantity else "", "margin": position.margin,
                            **position_triggers(position, perpetuals[key[1]], contract), "margin_called_at": None,
                            "updated_at": now})
    bulk_upsert_rows(Position, booked.rows, key=["client_id", "contract_id"],
                     replace=["quantity", "cost", "entry_price", "realised_pnl", "margin_mode", "margin",
                              "liquidation_px", "call_px", "margin_called_at", "updated_at"])
    booked.margin = dict(booked.margin)
    return booked


def position_triggers(position: PerpPosition, perpetual: Perpetual, contract: Contract) -> dict[str, Decimal | None]:
    """The position's stored trigger prices (``Position.liquidation_px`` and ``call_px``): an isolated one's
    (``ccp.perps.margin.isolated_triggers``), none for a cross or flat one (its account is checked whole)."""
    if position.mode != ISOLATED or not position.quantity:
        return {"liquidation_px": None, "call_px": None}
    liquidation, call = isolated_triggers(quantity=position.quantity, cost=position.cost, margin=position.margin,
                                          tiers=perpetual.tier_list, fee_rate=perpetual.liquidation_fee_rate,
                                          call_ratio=settings.CCP_MARGIN_CALL_RATIO, tick=contract.tick_size)
    return {"liquidation_px": liquidation, "call_px": call}


def liquidation_order_ids(order_ids) -> set[int]:
    """Which of these orders a liquidation entered (``Liquidation``): their fills keep the margin."""
    order_ids = set(order_ids)
    return set(Liquidation.objects.filter(order_id__in=order_ids).values_list("order_id", flat=True)) if order_ids \
        else set()
