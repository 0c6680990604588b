"""Market data kept as it happens: candles (a contract's trades per time bucket)."""

from django.db import models
from django.db.models import F, Q

from ccp.money import MoneyField


class Interval(models.TextChoices):
    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "1d"


class Candle(models.Model):
    """A contract's trades in one bucket of an interval (``ccp.marketdata.candles`` says how buckets
    align and how open and close follow the trade sequence). Written only by ``candles_record``, as
    trades are booked; a bucket without trades has no row."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="candles",
                                 db_index=False)  # the unique (contract, interval, bucket start) index serves it
    interval = models.CharField(max_length=2, choices=Interval.choices)
    bucket_start = models.DateTimeField(help_text="aligned to the interval, UTC")
    open = MoneyField(help_text="price of the bucket's lowest trade sequence")
    high = MoneyField()
    low = MoneyField()
    close = MoneyField(help_text="price of the bucket's highest trade sequence")
    volume = MoneyField(help_text="contracts traded")
    trade_count = models.BigIntegerField()
    first_sequence = models.BigIntegerField()
    last_sequence = models.BigIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["contract_id", "interval", "-bucket_start"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "interval", "bucket_start"], name="candle_unique_bucket"),
            models.CheckConstraint(condition=Q(interval__in=Interval.values), name="candle_interval_valid"),
            models.CheckConstraint(condition=Q(low__gte=0), name="candle_low_non_negative"),
            models.CheckConstraint(condition=Q(low__lte=F("open"), open__lte=F("high"))
                                   & Q(low__lte=F("close"), close__lte=F("high")), name="candle_prices_within_range"),
            models.CheckConstraint(condition=Q(volume__gt=0), name="candle_volume_positive"),
            models.CheckConstraint(condition=Q(trade_count__gt=0), name="candle_trade_count_positive"),
            models.CheckConstraint(condition=Q(first_sequence__gt=0, first_sequence__lte=F("last_sequence")),
                                   name="candle_sequences_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.contract_id} {self.interval} {self.bucket_start:%Y-%m-%d %H:%M} {self.close}"
