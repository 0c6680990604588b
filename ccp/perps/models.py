from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from ccp.accounts.models import FundLock
from ccp.money import ZERO, MoneyField
from ccp.perps.margin import Tier
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement


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


class LiquidationStep(models.TextChoices):
    ORDER = "order", "reduce-only order on the book"
    TAKEOVER = "takeover", "taken over by the insurance fund"
    ADL = "adl", "auto-deleveraged"


class Funding(models.Model):
    """One funding time of a perpetual, as ``perpetual_fund`` settled it: the rate (the interval's mean premium,
    capped; longs paid shorts when positive), the mark the positions were settled to, how many mark updates the
    mean took, and what the payers paid in all (the receivers got as much, rounding residue included)."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="fundings")
    at = models.DateTimeField(help_text="the funding time")
    rate = MoneyField()
    mark_px = MoneyField()
    samples = models.PositiveIntegerField(help_text="mark updates in the interval")
    paid = MoneyField(help_text="the sum of the payments (each side's total)")
    settled_at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "contract_id"]
        constraints = [models.UniqueConstraint(fields=["contract", "at"], name="funding_unique_time"),
                       models.CheckConstraint(condition=Q(paid__gte=0, mark_px__gt=0), name="funding_amounts_valid")]

    def __str__(self) -> str:
        return f"{self.contract} funding {self.rate} @ {self.at:%Y-%m-%d %H:%M}"


class Liquidation(models.Model):
    """One step of a position's liquidation: what the engine saw (the mark, the position, its equity and its
    requirement) and what it did (``kind``): entered a reduce-only order on the book (``order``), had the
    insurance fund take the position over at its bankruptcy price (``takeover``, ``counterparty`` the fund),
    or closed it against an opposite position at its bankruptcy price (``adl``, ``counterparty`` the
    deleveraged trader). ``order`` is the liquidated client's order of the step: its fills keep the margin
    in the position, and those of ``order`` and ``takeover`` steps pay the liquidation fee (``fee``, summed
    as they book). Append-only but for ``fee``: written by ``perpetual_liquidations_enter`` and, for the fee,
    by the booking (``ccp.perps.booking``)."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="liquidations")
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="liquidations")
    kind = models.CharField(max_length=8, choices=LiquidationStep.choices, default=LiquidationStep.ORDER)
    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT, related_name="liquidation")
    counterparty = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+", help_text="takeover: the insurance fund; adl: the "
                                                                 "deleveraged trader")
    mark_px = MoneyField()
    quantity = MoneyField(help_text="the position's signed quantity when it was found")
    equity = MoneyField(help_text="margin + quantity x (mark - entry)")
    requirement = MoneyField(help_text="(maintenance rate + liquidation fee) x notional at the mark")
    size = MoneyField(help_text="order: what it closes (the fewest lots restoring 1.5x the requirement, or all); "
                                "takeover, adl: what was closed at the bankruptcy price")
    bankruptcy_px = MoneyField(help_text="the order's protection price, or the takeover's and ADL's price")
    fee = MoneyField(default=ZERO, db_default=ZERO, help_text="liquidation fee its fills paid to the insurance fund")
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(size__gt=0), name="liquidation_size_positive"),
            models.CheckConstraint(condition=Q(kind__in=LiquidationStep.values), name="liquidation_kind_valid"),
            models.CheckConstraint(condition=Q(kind=LiquidationStep.ORDER) | Q(counterparty__isnull=False),
                                   name="liquidation_counterparty_present"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="liquidation_fee_non_negative"),
        ]
        indexes = [models.Index(fields=["contract", "client", "-id"], name="liquidation_position")]

    def __str__(self) -> str:
        return f"{self.contract} {self.client}: {self.kind} {self.size} at mark {self.mark_px}"


class _OfTheInsuranceFund(models.Manager):
    """Only the insurance fund's rows (``CCP_INSURANCE_FUND_ADDRESS``)."""

    def get_queryset(self):
        return super().get_queryset().filter(client__address=settings.CCP_INSURANCE_FUND_ADDRESS)


class InsuranceFundBalance(FundLock):
    """The insurance fund's fund locks (``ccp.perps.fund``): its balance per collateral currency."""

    objects = _OfTheInsuranceFund()

    class Meta:
        proxy = True
        verbose_name = "insurance fund balance"


class InsuranceFundMovement(CashMovement):
    """The insurance fund's cash movements: liquidation fees in, takeovers, its unwinds, variation, funding."""

    objects = _OfTheInsuranceFund()

    class Meta:
        proxy = True
        verbose_name = "insurance fund movement"


class _OpenPerpetual(models.Manager):
    def get_queryset(self):
        return super().get_queryset().exclude(margin_mode="").exclude(quantity=0)


class PositionAtRisk(Position):
    """The webconsole's watch list: perpetual positions nearest liquidation (``ccp.perps.watch``)."""

    objects = _OpenPerpetual()

    class Meta:
        proxy = True
        verbose_name = "position nearest liquidation"
        verbose_name_plural = "positions nearest liquidation"
