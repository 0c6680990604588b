"""Reads of market data: candles, 24 h statistics, the last trade sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import Max, Min, OuterRef, Subquery, Sum

from ccp.clearing.models import Trade
from ccp.clock import require_aware
from ccp.contracts.models import Contract
from ccp.marketdata.candles import bucket_start
from ccp.marketdata.models import Candle, Interval
from ccp.money import ZERO
from ccp.risk.models import Position

WINDOW_MINUTES = 1440  # the 24 h statistics: this many 1m buckets, the current one last
PERCENT = Decimal("0.01")  # change_percent is rounded half-even to this


def candles_list(*, contract_id: int, interval: str, limit: int, since: datetime | None = None,
                 until: datetime | None = None) -> list[Candle]:
    """A contract's candles of ``interval``, oldest first: from ``since`` (bucket start at or after) the
    first ``limit``; without ``since`` the last ``limit`` (before ``until`` when given: bucket start
    before it). Buckets without trades have no candle, so none is returned for them."""
    candles = Candle.objects.filter(contract_id=contract_id, interval=interval)
    if until is not None:
        candles = candles.filter(bucket_start__lt=until)
    if since is not None:
        return list(candles.filter(bucket_start__gte=since).order_by("bucket_start")[:limit])
    return list(candles.order_by("-bucket_start")[:limit])[::-1]


def trade_last_sequence(*, contract_id: int) -> int:
    """The sequence of the contract's last trade; 0 before its first."""
    return Trade.objects.filter(contract_id=contract_id).aggregate(last=Max("sequence"))["last"] or 0


def window_start(now: datetime) -> datetime:
    """The first minute of the 24 h window at ``now``: the 1,440 one-minute buckets ending with the
    current one, so trades executed at or after (current minute's start - 23 h 59 min)."""
    return bucket_start(require_aware(now), Interval.MINUTE) - timedelta(minutes=WINDOW_MINUTES - 1)


@dataclass(frozen=True, slots=True)
class Stats:
    contract: str
    last_price: Decimal | None
    change: Decimal | None
    change_percent: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal
    trade_count: int
    open_interest: Decimal
    window_start: datetime
    window_end: datetime


def stats_list(*, contracts: Sequence[Contract], now: datetime) -> list[Stats]:
    """The 24 h statistics of ``contracts`` at ``now``, in their order (three queries for all).

    Window: the 1m candles of the 1,440 minutes ``window_start(now)`` .. the current minute (trades
    executed from ``window_start`` up to ``window_end``, the next minute's start, excluded): high, low,
    volume and trade count. ``last_price``: the last trade's (highest sequence), whenever it was.
    ``change``: ``last_price`` minus the reference price, the close of the last 1m candle before the
    window (the last trade before it) or, when there is none, the open of the first candle in the
    window (its first trade); ``change_percent`` is it over the reference, times 100, half-even to
    0.01; both null without any trade (and the percentage when the reference is 0). ``open_interest``:
    the sum of the contract's long positions."""
    start = window_start(now)
    end = start + timedelta(minutes=WINDOW_MINUTES)
    ids = [contract.pk for contract in contracts]
    minutes = Candle.objects.filter(contract=OuterRef("pk"), interval=Interval.MINUTE)
    in_window = minutes.filter(bucket_start__gte=start, bucket_start__lt=end)
    prices = {row["id"]: row for row in Contract.objects.filter(pk__in=ids).values("id").annotate(
        last=Subquery(Trade.objects.filter(contract=OuterRef("pk")).order_by("-sequence").values("price")[:1]),
        before=Subquery(minutes.filter(bucket_start__lt=start).order_by("-bucket_start").values("close")[:1]),
        first=Subquery(in_window.order_by("bucket_start").values("open")[:1]))}
    totals = {row["contract_id"]: row for row in Candle.objects.filter(
        contract_id__in=ids, interval=Interval.MINUTE, bucket_start__gte=start, bucket_start__lt=end,
    ).values("contract_id").annotate(high=Max("high"), low=Min("low"), volume=Sum("volume"),
                                     trade_count=Sum("trade_count")).order_by()}
    longs = dict(Position.objects.filter(contract_id__in=ids, quantity__gt=0).values("contract_id")
                 .annotate(total=Sum("quantity")).order_by().values_list("contract_id", "total"))
    out = []
    for contract in contracts:
        price, total = prices[contract.pk], totals.get(contract.pk, {})
        last = price["last"]
        reference = price["before"] if price["before"] is not None else price["first"]
        change = None if last is None or reference is None else last - reference
        percent = None if change is None or not reference else (change * 100 / reference).quantize(
            PERCENT, ROUND_HALF_EVEN)
        out.append(Stats(contract=contract.symbol, last_price=last, change=change, change_percent=percent,
                         high=total.get("high"), low=total.get("low"), volume=total.get("volume") or ZERO,
                         trade_count=total.get("trade_count") or 0, open_interest=longs.get(contract.pk, ZERO),
                         window_start=start, window_end=end))
    return out
