from django.db import models
from django.db.models import Q


class Edge(models.Model):
    """How far a background loop got: the last processed time or block number.

    Edges only move forward; a loop commits its edge in the same transaction as its work.
    """

    name = models.SlugField(max_length=64, unique=True)
    at = models.DateTimeField(null=True, blank=True, help_text="last processed time (UTC)")
    block_number = models.BigIntegerField(null=True, blank=True, help_text="last processed block")
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
