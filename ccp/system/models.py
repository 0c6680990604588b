from django.db import models
from django.db.models import Q


class Edge(models.Model):
    """How far a background loop got: the last processed time or block number.

    Edges only move forward; a loop commits its edge in the same transaction as its work.
    """

    name = models.SlugField(max_length=64, unique=True)
    at = models.DateTimeField(null=True, blank=True, help_text="last processed time (UTC)")
    block_number = models.BigIntegerField(null=True, blank=True, help_text="last processed block")
    block_hash = models.CharField(max_length=66, blank=True, help_text="hash of that block, to notice a reorg")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(at__isnull=False) | Q(block_number__isnull=False), name="edge_has_position"
            ),
            models.CheckConstraint(
                condition=Q(block_number__isnull=True) | Q(block_number__gte=0), name="edge_block_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.block_number if self.block_number is not None else self.at}"


class AlertKind(models.TextChoices):
    SETTLEMENT_PRICE = "settlement_price", "settlement price missing"
    CHAIN_REORG = "chain_reorg", "chain reorganisation"
    RECONCILIATION = "reconciliation", "fund locks differ from chain"
    EXPIRY_SETTLEMENT = "expiry_settlement", "expiry payoffs could not be booked"
    PRICES_STALE = "prices_stale", "no fresh spot price from any venue"
    SETTLEMENT_STUCK = "settlement_stuck", "settlement batch failing or unconfirmed"
    INSURANCE_FUND = "insurance_fund", "insurance fund below zero"


class OperatorAlert(models.Model):
    """Something an operator must look at. One open alert per key; raising it again updates it."""

    key = models.CharField(max_length=128, help_text="what it is about, e.g. settlement:BTC/USDC:2026-12-25")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    message = models.TextField()
    raised_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=1, help_text="times raised while open")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["resolved_at", "-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at__isnull=True),
                                    name="alert_one_open_per_key"),
            models.CheckConstraint(condition=Q(kind__in=AlertKind.values), name="alert_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}"
