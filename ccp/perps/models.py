from decimal import Decimal

from django.db import models
from django.db.models import Q

from ccp.money import ZERO, MoneyField
from ccp.perps.margin import Tier


class Perpetual(models.Model):
    """A perpetual's margin terms and its latest prices (the contract row holds the rest: pair, collateral,
    tick, lot, price band). Terms are set when it is listed (``perpetual_list``); prices move with every
    price update (``perpetual_marks_update``)."""

    contract = models.OneToOneField("contracts.Contract", on_delete=models.PROTECT, primary_key=True,
                                    related_name="perpetual")
    tiers = models.JSONField(help_text='maintenance tiers by position size: [{"up_to": "10", "rate": "0.005", '
                                       '"max_leverage": "100"}, ..., {"up_to": null, ...}]')
    liquidation_fee_rate = MoneyField(help_text="of the notional closed by a liquidation, to the insurance fund")
    funding_cap = MoneyField(help_text="largest funding rate per interval, either way")
    basis_alpha = MoneyField(default=Decimal("0.2"), help_text="how far each price update moves the basis "
                                                                "towards the book's")
    basis_bound = MoneyField(default=Decimal("0.005"), help_text="largest basis, as a share of the index")
    settle_px = MoneyField(null=True, blank=True, help_text="reference price R of the cash settled so far")
    index_px = MoneyField(null=True, blank=True, help_text="latest index; empty: stale")
    basis = MoneyField(default=ZERO, help_text="latest damped basis")
    mark_px = MoneyField(null=True, blank=True, help_text="latest mark; empty: no fresh index")
    marked_at = models.DateTimeField(null=True, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True,
                                     help_text="the last funding time settled (variation and funding)")

    class Meta:
        ordering = ["contract_id"]
        constraints = [
            models.CheckConstraint(condition=Q(liquidation_fee_rate__gte=0, liquidation_fee_rate__lt=Decimal("0.1")),
                                   name="perpetual_liquidation_fee_range"),
            models.CheckConstraint(condition=Q(funding_cap__gte=0, funding_cap__lt=Decimal("0.1")),
                                   name="perpetual_funding_cap_range"),
            models.CheckConstraint(condition=Q(basis_alpha__gt=0, basis_alpha__lte=1), name="perpetual_alpha_range"),
            models.CheckConstraint(condition=Q(basis_bound__gte=0, basis_bound__lt=Decimal("0.5")),
                                   name="perpetual_basis_bound_range"),
            models.CheckConstraint(condition=Q(mark_px__isnull=True) | Q(mark_px__gt=0),
                                   name="perpetual_mark_positive"),
        ]

    def __str__(self) -> str:
        return str(self.contract)

    @property
    def tier_list(self) -> list[Tier]:
        return tiers_parse(self.tiers)

    @property
    def max_leverage(self) -> Decimal:
        return self.tier_list[0].max_leverage


def tiers_parse(tiers: list[dict]) -> list[Tier]:
    """The stored tiers as ``Tier`` values (ValueError/TypeError/KeyError on a malformed list)."""
    return [Tier(None if t["up_to"] is None else Decimal(t["up_to"]), Decimal(t["rate"]), Decimal(t["max_leverage"]))
            for t in tiers]


class MarkPrice(models.Model):
    """One price update of a perpetual: the index (median of fresh venue prices), the damped basis and the
    mark. Funding averages the premium (mark - index) / index of an interval's rows."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="mark_prices")
    at = models.DateTimeField()
    index_px = MoneyField()
    basis = MoneyField()
    mark_px = MoneyField()

    class Meta:
        ordering = ["contract_id", "-at"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "at"], name="mark_price_unique_time"),
            models.CheckConstraint(condition=Q(index_px__gt=0, mark_px__gt=0), name="mark_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.contract} mark {self.mark_px} index {self.index_px} @ {self.at:%Y-%m-%d %H:%M:%S}"


class Liquidation(models.Model):
    """One step of a position's liquidation: what the engine saw (the mark, the position, its equity and its
    requirement) and the reduce-only order it entered on the book. Append-only: written by
    ``perpetual_liquidations_enter``."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="liquidations")
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="liquidations")
    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT, related_name="liquidation")
    mark_px = MoneyField()
    quantity = MoneyField(help_text="the position's signed quantity when it was found")
    equity = MoneyField(help_text="margin + quantity x (mark - entry)")
    requirement = MoneyField(help_text="(maintenance rate + liquidation fee) x notional at the mark")
    size = MoneyField(help_text="what the order closes: the fewest lots restoring 1.5x the requirement, or all")
    bankruptcy_px = MoneyField(help_text="the order's protection price: no fill beyond it")
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(size__gt=0), name="liquidation_size_positive")]

    def __str__(self) -> str:
        return f"{self.contract} {self.client}: {self.size} at mark {self.mark_px}"
