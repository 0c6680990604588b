"""Which perpetual positions a new mark reaches, and their margin calls.

Every isolated position keeps its trigger prices with it (``Position.liquidation_px`` and ``call_px``, and the
same signed, a short's negative: ``liquidation_key``, ``call_key``), written with every change of the position
(``ccp.perps.booking.position_triggers``). A mark ``M`` liquidates a long whose liquidation price is at or
above it and a short whose price is at or below it: a key at or above ``M``, or in ``[-M, 0)``. One index per
key (``position_liquidation_key``, ``position_call_key``) hands those over without reading the positions the
mark does not reach, with the column's own statistics for the planner. The liquidation check itself finds the
positions a mark crossed in memory (``ccp.perps.live``: an index of the liquidation keys synced from the
positions written since its last use, built from these columns by a restarted worker); ``isolated_reached`` is
the same question asked of PostgreSQL, kept as the bench's and the tests' reference (a crash tick hands
hundreds of thousands of rows out of it). The margin calls, a warning, are swept once a minute through the
call key (``isolated_called``, ``perpetuals_margin_call``).

Cross positions are checked per account (``ccp.perps.cross``): their trigger moves with the client's other
positions and collateral, so the accounts holding one on the perpetual are read and checked at each mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Sign

from ccp.money import money_str
from ccp.perps.accounting import ISOLATED
from ccp.perps.cross import cross_accounts, leg_margin
from ccp.perps.margin import liquidation_price
from ccp.risk.models import Position
from ccp.streams import client_stream_publish_many


class Reached(NamedTuple):
    """An isolated position a mark reached: the columns the liquidation check needs, no model instance (a tuple:
    hundreds of thousands on a crash tick are built and sorted as plain tuples)."""

    position_id: int
    client_id: int
    quantity: Decimal
    cost: Decimal
    margin: Decimal


def _key_reached(key: str, mark: Decimal) -> Q:
    return Q(**{f"{key}__gte": mark}) | Q(**{f"{key}__gte": -mark, f"{key}__lt": 0})


def isolated_reached(*, contract_id: int, mark: Decimal) -> list[Reached]:
    """The perpetual's isolated positions whose liquidation price ``mark`` has reached (a long's at or above it,
    a short's at or below), by position id: through the liquidation key index (module docstring)."""
    rows = Position.objects.filter(_key_reached("liquidation_key", mark), contract_id=contract_id).values_list(
        "id", "client_id", "quantity", "cost", "margin").order_by()  # no ORDER BY (not even Meta's): the planner
    return [Reached._make(row) for row in sorted(rows)]  # walked the table by it; sorted here instead


def isolated_called(*, contract_id: int, mark: Decimal, now: datetime) -> list[Position]:
    """The perpetual's isolated positions past their margin call price at ``mark`` but not their liquidation
    price, whose last call (if any) is at least CCP_MARGIN_CALL_REPEAT_SECONDS old: through the call key
    index."""
    repeat = now - timedelta(seconds=settings.CCP_MARGIN_CALL_REPEAT_SECONDS)
    return list(Position.objects.filter(_key_reached("call_key", mark), contract_id=contract_id).exclude(
        _key_reached("liquidation_key", mark)).filter(Q(margin_called_at__isnull=True)
                                                      | Q(margin_called_at__lte=repeat)).order_by("id"))


def margin_calls_send(*, positions: list[Position], symbol: str, mark: Decimal, now: datetime) -> list[Position]:
    """Send a ``margin_call`` event to each position's owner (after commit) unless it had one less than
    CCP_MARGIN_CALL_REPEAT_SECONDS ago, and note when; the caller passes positions reached but not liquidated,
    holding their contract's row. Returns the positions called now."""
    repeat = timedelta(seconds=settings.CCP_MARGIN_CALL_REPEAT_SECONDS)
    due = [p for p in positions if p.margin_called_at is None or now - p.margin_called_at >= repeat]
    if not due:
        return []
    with transaction.atomic():
        Position.objects.filter(pk__in=[p.pk for p in due]).update(margin_called_at=now)
        client_stream_publish_many((p.client_id, {
            "type": "margin_call", "contract": symbol, "quantity": money_str(p.quantity), "mark_price": money_str(mark),
            "margin": money_str(p.margin),
            "liquidation_price": None if p.liquidation_px is None else money_str(p.liquidation_px),
            "at": now.isoformat()}) for p in due)
    return due


@dataclass(frozen=True)
class AtRisk:
    """A position and how far its perpetual's mark is from liquidating it (the webconsole's watch list)."""

    contract: str
    client: str
    mode: str
    quantity: Decimal
    entry_px: Decimal
    mark_px: Decimal
    liquidation_px: Decimal | None
    distance: Decimal | None  # (mark - liquidation) / mark for a long, the other way for a short


def positions_nearest_liquidation(*, limit: int = 100) -> list[AtRisk]:
    """The ``limit`` open perpetual positions whose liquidation price is nearest their perpetual's latest mark,
    isolated (their stored price, through SQL) and cross (their account's price for the position, the other
    legs at their marks), nearest first; the insurance fund's left out. For operators: it reads every cross
    account, so it is a page, not a loop."""
    from ccp.perps.fund import insurance_fund_address
    from ccp.perps.models import Perpetual

    rows = []
    for position in (Position.objects.filter(margin_mode=ISOLATED, liquidation_px__isnull=False,
                                             contract__perpetual__mark_px__isnull=False)
                     .exclude(client__address=insurance_fund_address())
                     .annotate(mark=F("contract__perpetual__mark_px"))
                     .annotate(distance=Sign("quantity") * (F("mark") - F("liquidation_px")) / F("mark"))
                     .select_related("contract", "client").order_by("distance", "id")[:limit]):
        rows.append(_at_risk(position, position.mark, position.liquidation_px))
    for perpetual in Perpetual.objects.filter(mark_px__isnull=False).select_related("contract"):
        contract = perpetual.contract
        accounts = cross_accounts(contract_id=contract.pk, currency_id=contract.collateral_id,
                                  fresh_since=datetime.min.replace(tzinfo=UTC))
        positions = Position.objects.select_related("client", "contract").in_bulk(
            [leg.position_id for _, legs in accounts.values() for leg in legs if leg.contract_id == contract.pk])
        for cash, legs in accounts.values():
            leg = next(leg for leg in legs if leg.contract_id == contract.pk)
            position = positions[leg.position_id]
            if position.client.address == insurance_fund_address():
                continue
            price = liquidation_price(quantity=leg.quantity, entry_px=leg.entry_px, margin=leg_margin(cash, legs, leg),
                                      rate=leg.rate, fee_rate=leg.fee_rate, tick=contract.tick_size)
            rows.append(_at_risk(position, perpetual.mark_px, price))
    return sorted(rows, key=lambda r: (r.distance is None, r.distance or 0))[:limit]


def _at_risk(position: Position, mark: Decimal, liquidation: Decimal | None) -> AtRisk:
    long = position.quantity > 0
    distance = None if liquidation is None else ((mark - liquidation) if long else (liquidation - mark)) / mark
    return AtRisk(contract=position.contract.symbol, client=position.client.checksum_address,
                  mode=position.margin_mode, quantity=position.quantity, entry_px=position.cost / position.quantity,
                  mark_px=mark, liquidation_px=liquidation, distance=distance)
