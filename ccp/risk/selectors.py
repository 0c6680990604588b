from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet

from ccp.contracts.models import Contract, ContractState
from ccp.contracts.payoffs import Leg, mark_px
from ccp.perps.selectors import mark_fresh
from ccp.prices.selectors import index_by_pair
from ccp.risk.models import Position
from ccp.risk.positions import PositionState, unrealised_pnl


def positions_of(*, client_id: int) -> QuerySet[Position]:
    """A client's positions a trader follows: every open one, and closed ones (their realised PnL) on
    contracts not yet settled. A settled contract's result is in the statement."""
    return (Position.objects.filter(client_id=client_id)
            .filter(~Q(quantity=0) | ~Q(contract__state=ContractState.SETTLED))
            .select_related("contract__perpetual").order_by("contract__expiry_date", "contract__symbol"))


def positions_marked(positions: list[Position], *, now: datetime) -> list[Position]:
    """Set ``mark_price`` and ``unrealised_pnl`` on each position (None without a fresh index for its
    pair: ``ccp.contracts.payoffs.mark_px``; a perpetual's own mark, ``ccp.perps.selectors.mark_fresh``)."""
    indices = index_by_pair(now=now) if positions else {}
    for position in positions:
        contract: Contract = position.contract
        index: Decimal | None = indices.get(contract.pair_id)
        if contract.is_perpetual:
            position.mark_price = mark_fresh(contract.perpetual, now=now)
        else:
            position.mark_price = None if index is None else mark_px(contract.terms, index)
        state = PositionState(position.quantity, position.cost, position.realised_pnl)
        position.unrealised_pnl = unrealised_pnl(contract.terms, state, position.mark_price)
    return positions


def portfolio_legs(*, client_id: int, contract: Contract) -> list[Leg]:
    """The client's positions in ``contract``'s portfolio (its pair and expiry date) as legs: what an order
    on it nets against (``ccp.orders.rules.order_value_netted``). Read, not locked: the caller holds the
    client's fund lock, which every booking that moves these positions takes before them."""
    rows = (Position.objects.filter(client_id=client_id, contract__pair_id=contract.pair_id,
                                    contract__expiry_date=contract.expiry_date).exclude(quantity=0)
            .select_related("contract").order_by("contract_id"))
    return [Leg(row.contract.terms, row.quantity) for row in rows]
