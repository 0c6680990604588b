from django.db import models
from django.db.models import Q

from ccp.money import ZERO, MoneyField


class Position(models.Model):
    """A client's signed quantity in a contract: positive long (bought), negative short (sold)."""

    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="positions")
    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="positions")
    quantity = MoneyField(default=ZERO)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["client_id", "contract_id"]
        constraints = [models.UniqueConstraint(fields=["client", "contract"], name="position_unique_client_contract")]

    def __str__(self) -> str:
        return f"{self.client} {self.quantity:+} {self.contract}"


class Lockup(models.Model):
    """Collateral locked for a client's portfolio of one (expiry, pair): max(0, -worst-case payoff).

    Its sum per currency is mirrored in FundLock.lockup_value by the services that write lockups.
    """

    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="lockups")
    pair = models.ForeignKey("contracts.Pair", on_delete=models.PROTECT, related_name="+")
    expiry_date = models.DateField()
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    amount = MoneyField(default=ZERO)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["client_id", "expiry_date", "pair_id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "pair", "expiry_date"], name="lockup_unique_portfolio"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="lockup_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.pair} {self.expiry_date}: {self.amount}"
