"""Which perpetual positions a new mark reaches, and their margin calls.

Every isolated position keeps its trigger prices with it (``Position.liquidation_px`` and ``call_px``, written
with every change of the position: ``ccp.perps.booking.position_triggers``). A mark reaches a long whose margin
call price is at or above it and a short whose call price is at or below it: two partial indexes
(``position_long_call_px``, ``position_short_call_px``) hand those over without walking the positions the mark
does not reach, and since they live in PostgreSQL a restarted worker has nothing to rebuild: the next mark finds
every position that crossed meanwhile. Those below the liquidation price are liquidated
(``ccp.perps.services.perpetual_liquidations_enter``); the others get a margin call.

Cross positions are checked per account (``ccp.perps.cross``): their trigger moves with the client's other
positions and collateral, so the accounts holding one on the perpetual are read and checked at each mark.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from ccp.money import money_str
from ccp.perps.accounting import ISOLATED
from ccp.risk.models import Position
from ccp.streams import client_stream_publish_many


def isolated_reached(*, contract_id: int, mark: Decimal) -> QuerySet[Position]:
    """The perpetual's isolated positions whose margin call price ``mark`` has reached (a long's at or above
    it, a short's at or below), by id: through the call price indexes, without reading the others."""
    return Position.objects.filter(contract_id=contract_id, margin_mode=ISOLATED).filter(
        Q(quantity__gt=0, call_px__gte=mark) | Q(quantity__lt=0, call_px__lte=mark)).order_by("id")


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
