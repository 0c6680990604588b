"""Booking a venue's fills on perpetuals: the clearing core's step for margined positions
(``ccp.clearing.booking.trades_clear`` calls it with the fills of its perpetual contracts).

Each fill goes through ``ccp.perps.accounting.fill_book`` in trade order: cash relative to the
perpetual's reference price R (the first trade's price sets R when it has none), the position's quantity,
cost, realised PnL and margin (taken at the order's leverage for the part that opens). A flat position
takes the margin mode of the order that opens it; while it is open, its own mode holds whatever later
orders say. Nothing is locked up: the fund lock's ``margin_value`` moves by what the positions hold.

A liquidation's fill (an order a ``Liquidation`` step names) keeps the margin in the position; the fills of
``order`` and ``takeover`` steps (not ``adl``) also pay the liquidation fee to the insurance fund
(``ccp.perps.liquidation.liquidation_fee``): taken out of an isolated position's margin while it stays open
(held and cash move together, available does not), capped at the position's equity at the fill price.
``fee_lines`` are the fee's cash lines (origin ``liquidation_fee``): the payer's, and the fund's one per
contract, summing to zero; each step's ``fee`` adds up what its fills paid.

Locks (``ccp.locks``): the positions (6); the caller holds the contracts (3), which guard their
``Perpetual`` rows (every writer of R holds the contract's row).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import F

from ccp.contracts.models import Contract
from ccp.db import bulk_upsert_rows
from ccp.locks import perp_position_rows_lock
from ccp.money import ZERO
from ccp.perps.accounting import ISOLATED, PerpPosition, fill_book
from ccp.perps.fund import insurance_fund_locks
from ccp.perps.liquidation import liquidation_fee
from ccp.perps.margin import isolated_triggers
from ccp.perps.models import Liquidation, LiquidationStep, Perpetual
from ccp.risk.models import Position

# (client, contract) -> its fills in trade order: (signed quantity, price, the order's leverage and margin mode,
# the liquidation step the order is for ("" for none), the order's id)
Fills = Mapping[tuple[int, int], Sequence[tuple[Decimal, Decimal, Decimal, str, str, int]]]
# The steps whose fills pay the liquidation fee (ADL is exempt).
FEE_STEPS = frozenset({LiquidationStep.ORDER, LiquidationStep.TAKEOVER})


@dataclass
class PerpsBooked:
    lines: dict[tuple[int, int], tuple[Decimal, Decimal]]  # (client, contract) -> (cash, position change)
    margin: dict[tuple[int, int], Decimal]  # (client, currency) -> change of the fund lock's margin_value
    rows: list[dict]  # the changed positions, as ccp.clearing.booking's position rows
    fee_lines: dict[tuple[int, int], tuple[Decimal, Decimal]] = field(default_factory=dict)  # as ``lines``


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
    # A cross position's fee is capped at what its equity has left at the fill price, n x |p - B|: B, the
    # bankruptcy price its step saw, is where the account's share behind it runs out (ccp.perps.cross).
    bankrupt_at = dict(Liquidation.objects.filter(order_id__in=[
        order_id for changes in fills.values() for *_, step, order_id in changes if step in FEE_STEPS]).values_list(
        "order_id", "bankruptcy_px")) if any(step for changes in fills.values() for *_, step, _ in changes) else {}
    fees: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # (client, contract) -> fee paid
    step_fees: dict[int, Decimal] = defaultdict(Decimal)  # order id -> fee paid
    for key, changes in sorted(fills.items()):
        contract = contracts[key[1]]
        settle_px = perpetuals[key[1]].settle_px
        position = positions.get(key) or PerpPosition()
        cash, moved = ZERO, ZERO
        for quantity, price, leverage, mode, step, order_id in changes:
            if not position.quantity:  # a flat position takes the order's mode
                position = PerpPosition(mode=mode, realised_pnl=position.realised_pnl)
            before = position
            result = fill_book(position, quantity=quantity, price=price, leverage=leverage, settle_px=settle_px,
                               keep_margin=bool(step))
            position, held = result.position, result.held_change
            if step in FEE_STEPS and before.quantity:
                isolated = before.mode == ISOLATED
                left = (before.margin + before.quantity * (price - before.entry_px) if isolated
                        else before.quantity * (price - bankrupt_at[order_id]))  # n x |p - B|: B is beyond p
                fee = liquidation_fee(quantity=quantity, price=price, fee_rate=perpetuals[key[1]].liquidation_fee_rate,
                                      equity=left)
                if fee and isolated and position.quantity:  # out of the margin: held falls with the cash
                    position, held = replace(position, margin=position.margin - fee), held - fee
                fees[key] += fee
                step_fees[order_id] += fee
            cash, moved = cash + result.cash, moved + quantity
            booked.margin[(key[0], contract.collateral_id)] += held
        booked.lines[key] = (cash, moved)
        booked.rows.append({"client_id": key[0], "contract_id": key[1], "quantity": position.quantity,
                            "cost": position.cost, "entry_price": position.entry_shown,
                            "realised_pnl": position.realised_pnl,
                            "margin_mode": position.mode if position.quantity else "", "margin": position.margin,
                            **position_triggers(position, perpetuals[key[1]], contract), "margin_called_at": None,
                            "updated_at": now})
    bulk_upsert_rows(Position, booked.rows, key=["client_id", "contract_id"],
                     replace=["quantity", "cost", "entry_price", "realised_pnl", "margin_mode", "margin",
                              "liquidation_px", "call_px", "liquidation_key", "call_key", "margin_called_at",
                              "updated_at"])
    booked.margin = dict(booked.margin)
    booked.fee_lines = _fee_lines(fees, contracts, now) if any(fees.values()) else {}
    for order_id, fee in sorted(step_fees.items()):
        if fee:
            Liquidation.objects.filter(order_id=order_id).update(fee=F("fee") + fee)
    return booked


def position_triggers(position: PerpPosition, perpetual: Perpetual, contract: Contract) -> dict[str, Decimal | None]:
    """The position's stored trigger prices (``Position.liquidation_px`` and ``call_px``): an isolated one's
    (``ccp.perps.margin.isolated_triggers``), none for a cross or flat one (its account is checked whole)."""
    if position.mode != ISOLATED or not position.quantity:
        return {"liquidation_px": None, "call_px": None, "liquidation_key": None, "call_key": None}
    liquidation, call = isolated_triggers(quantity=position.quantity, cost=position.cost, margin=position.margin,
                                          tiers=perpetual.tier_list, fee_rate=perpetual.liquidation_fee_rate,
                                          call_ratio=settings.CCP_MARGIN_CALL_RATIO, tick=contract.tick_size)
    sign = 1 if position.quantity > 0 else -1
    return {"liquidation_px": liquidation, "call_px": call,
            "liquidation_key": None if liquidation is None else sign * liquidation,
            "call_key": None if call is None else sign * call}


def _fee_lines(fees: Mapping[tuple[int, int], Decimal], contracts: Mapping[int, Contract], now: datetime
               ) -> dict[tuple[int, int], tuple[Decimal, Decimal]]:
    """The fee's cash lines: each payer's, and the insurance fund's per contract (their sum)."""
    funds = insurance_fund_locks(currency_ids={contracts[c].collateral_id for _, c in fees}, now=now)
    lines: dict[tuple[int, int], tuple[Decimal, Decimal]] = {}
    received: dict[int, Decimal] = defaultdict(Decimal)
    for (client_id, contract_id), fee in sorted(fees.items()):
        if fee:
            lines[(client_id, contract_id)] = (-fee, ZERO)
            received[contract_id] += fee
    for contract_id, fee in sorted(received.items()):
        lines[(funds[contracts[contract_id].collateral_id].client_id, contract_id)] = (fee, ZERO)
    return lines


def liquidation_orders(order_ids) -> dict[int, str]:
    """Which of these orders a liquidation step names (``Liquidation``), with the step's kind: their fills
    keep the margin, and those of ``FEE_STEPS`` pay the fee."""
    order_ids = set(order_ids)
    return dict(Liquidation.objects.filter(order_id__in=order_ids).values_list("order_id", "kind")) if order_ids \
        else {}


def insurance_fund_keys(steps: Mapping[int, str], orders: Mapping[int, object], contracts: Mapping[int, Contract],
                        now: datetime) -> set[tuple[int, int]]:
    """The insurance fund's (client, currency) fund lock keys the fees of these liquidation ``steps`` (order id
    -> kind) may pay into (created on first use): the caller locks them with the rest (``ccp.locks`` 5)."""
    currency_ids = {contracts[orders[order_id].contract_id].collateral_id for order_id, kind in steps.items()
                    if kind in FEE_STEPS}
    if not currency_ids:
        return set()
    return {(f.client_id, currency_id) for currency_id, f in insurance_fund_locks(currency_ids=currency_ids,
                                                                                    now=now).items()}


def shortfall_lines(*, fills: Fills, locked: Mapping[tuple[int, int], object], deltas: Sequence[Mapping],
                    contracts: Mapping[int, Contract], now: datetime) -> dict[tuple[int, int], tuple[Decimal, Decimal]]:
    """The safety net under every perpetual fill: a client whose available collateral these fills would take
    below zero (a loss beyond everything it has: the liquidation engine and the matcher's close bound keep it
    from happening, but a price can gap) is brought back to exactly zero by the insurance fund. ``deltas``:
    the booking's changes of settle, order, lockup and margin value per (client, currency), in that order;
    ``locked``: the clients' fund locks before them. Returns the cash lines (client, contract) -> (amount, 0):
    each such client's (on its first perpetual of the currency in ``fills``), and the fund's per contract
    (their sum, negative); the fund's own available may go below zero (``FundLock.insurance_fund``)."""
    settle, order, lockup, margin = deltas
    lines: dict[tuple[int, int], tuple[Decimal, Decimal]] = {}
    paid: dict[int, Decimal] = defaultdict(Decimal)
    seen = set()
    for client_id, contract_id in sorted(fills):
        key = (client_id, contracts[contract_id].collateral_id)
        if key in seen or locked[key].insurance_fund:
            continue
        seen.add(key)
        after = (locked[key].available + settle.get(key, ZERO) - order.get(key, ZERO) - lockup.get(key, ZERO)
                 - margin.get(key, ZERO))
        if after < 0:
            lines[(client_id, contract_id)] = (-after, ZERO)
            paid[contract_id] -= after
    if lines:
        funds = insurance_fund_locks(currency_ids={contracts[c].collateral_id for c in paid}, now=now)
        for contract_id, amount in sorted(paid.items()):
            fund_key = (funds[contracts[contract_id].collateral_id].client_id, contract_id)
            lines[fund_key] = (lines.get(fund_key, (ZERO, ZERO))[0] - amount, ZERO)
    return lines
