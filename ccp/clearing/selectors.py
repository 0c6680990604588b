"""Reads of the trade ledger: a client's fills (their side of each trade) and a contract's public trades."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db.models import F

from ccp.clearing.models import Trade

SIDES = ("buy", "sell")  # a self-trade's two fills: the buy first, newest first by trade id


class FillCursor(NamedTuple):
    """Where a page of fills ends: the last fill's trade id and side."""

    trade_id: int
    side: str

    def __str__(self) -> str:
        return f"{self.trade_id}.{self.side}"

    @classmethod
    def parse(cls, text: str) -> FillCursor:
        trade_id, _, side = text.partition(".")
        return cls(int(trade_id), side)


def fills_list(*, client_id: int, limit: int, contract_symbol: str | None = None, order_id: int | None = None,
               since: datetime | None = None, after: FillCursor | None = None) -> tuple[list[dict], FillCursor | None]:
    """The client's fills, newest first (by trade id; a self-trade's buy before its sell), at most
    ``limit`` after the cursor ``after``, and the cursor of the next page (None on the last). Nobody
    else's side of a trade is ever read."""
    fills = []
    for side in SIDES:
        trades = Trade.objects.filter(**{f"{side}_client_id": client_id})
        if contract_symbol is not None:
            trades = trades.filter(contract__symbol=contract_symbol)
        if order_id is not None:
            trades = trades.filter(**{f"{side}_order_id": order_id})
        if since is not None:
            trades = trades.filter(executed_at__gte=since)
        if after is not None:
            # After (id, buy) comes that trade's sell, then older trades; after (id, sell), older trades.
            inclusive = side == "sell" and after.side == "buy"
            trades = trades.filter(**{"id__lte" if inclusive else "id__lt": after.trade_id})
        fills.extend(_fill_rows(trades.order_by("-id"), side, limit + 1))
    fills.sort(key=lambda f: (-f["trade_id"], SIDES.index(f["side"])))
    page = fills[:limit]
    return page, FillCursor(page[-1]["trade_id"], page[-1]["side"]) if len(fills) > limit else None


def order_fills(*, order_id: int, side: str) -> list[dict]:
    """One order's fills, oldest first."""
    return _fill_rows(Trade.objects.filter(**{f"{side}_order_id": order_id}).order_by("id"), side)


def _fill_rows(trades, side: str, limit: int | None = None) -> list[dict]:
    rows = trades.values("price", "quantity", "executed_at", "venue", "venue_ref", trade_id=F("id"),
                         order_id=F(f"{side}_order_id"), contract_symbol=F("contract__symbol"))
    return [{**row, "side": side} for row in (rows if limit is None else rows[:limit])]


def trades_list(*, contract_id: int, limit: int, before_sequence: int | None = None,
                after_sequence: int | None = None) -> tuple[list[Trade], int | None]:
    """A contract's trades, newest first (by sequence), at most ``limit`` below ``before_sequence``, and
    the cursor of the next page (the last sequence returned; None on the last page). With
    ``after_sequence``: oldest first from the next sequence on (a stream's re-sync after a gap)."""
    trades = Trade.objects.filter(contract_id=contract_id)
    if before_sequence is not None:
        trades = trades.filter(sequence__lt=before_sequence)
    if after_sequence is not None:
        trades = trades.filter(sequence__gt=after_sequence)
    rows = list(trades.order_by("sequence" if after_sequence is not None else "-sequence")[:limit + 1])
    page = rows[:limit]
    return page, page[-1].sequence if len(rows) > limit else None
