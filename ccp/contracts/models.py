from datetime import date, datetime
from decimal import Decimal
from functools import cached_property

from django.db import models
from django.db.models import F, Q

from ccp.clock import expiry_at, trading_ends_at
from ccp.contracts.payoffs import ContractKind, Terms, price_bounds
from ccp.money import MoneyField


class Currency(models.Model):
    """A token the CCP knows: collateral, or one side of an underlying pair."""

    symbol = models.CharField(max_length=12, unique=True, help_text="e.g. BTC, USDC")
    name = models.CharField(max_length=64, blank=True)
    decimals = models.PositiveSmallIntegerField(default=18, help_text="token decimals on chain")
    token_address = models.CharField(max_length=42, null=True, blank=True, unique=True,
                                     help_text="ERC-20 address for collateral tokens")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "currencies"
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(symbol__regex=r"^[A-Z0-9]{2,12}$"), name="currency_symbol_format"),
            models.CheckConstraint(condition=Q(decimals__lte=36), name="currency_decimals_range"),
            models.CheckConstraint(
                condition=Q(token_address__isnull=True) | Q(token_address__regex=r"^0x[0-9a-f]{40}$"),
                name="currency_token_address_format",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol


class Pair(models.Model):
    """An underlying: base priced in quote, e.g. BTC/USDC. Payoffs are in quote units."""

    base = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    quote = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["base__symbol", "quote__symbol"]
        constraints = [
            models.UniqueConstraint(fields=["base", "quote"], name="pair_unique"),
            models.CheckConstraint(condition=~Q(base=F("quote")), name="pair_distinct_currencies"),
        ]

    def __str__(self) -> str:
        return f"{self.base.symbol}/{self.quote.symbol}"


class ContractState(models.TextChoices):
    LISTED = "listed", "listed (trading)"
    HALTED = "halted", "halted (expiry day)"
    EXPIRED = "expired", "expired"
    SETTLED = "settled", "settled"


class TradingMode(models.TextChoices):
    AUCTION = "auction", "periodic batch auctions"
    CONTINUOUS = "continuous", "continuous order book"


_STRIKELESS = [ContractKind.FUTURE.value, ContractKind.PERPETUAL.value]


class Contract(models.Model):
    """A dated call, put or future on a pair, expiring at 12:00 UTC on ``expiry_date``, or a perpetual.

    A dated contract's settlement price is clamped to [floor_px, cap_px], so every payoff is bounded and
    every position can be fully collateralised. A perpetual has no expiry (``expiry_date`` empty) and no
    payoff: its positions are margined (``ccp.perps``), [floor_px, cap_px] is its price band, and it
    trades continuously.
    """

    Kind = models.TextChoices("Kind", [(k.name, k.value) for k in ContractKind])

    symbol = models.CharField(max_length=64, unique=True)
    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="contracts")
    collateral = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    strike_px = MoneyField(null=True, blank=True, help_text="empty for futures")
    expiry_date = models.DateField(null=True, blank=True,
                                   help_text="expires at 12:00 UTC on this day; empty for a perpetual")
    floor_px = MoneyField(help_text="lowest settlement price")
    cap_px = MoneyField(help_text="highest settlement price")
    tick_size = MoneyField(help_text="price grid")
    lot_size = MoneyField(help_text="quantity grid")
    state = models.CharField(max_length=8, choices=ContractState.choices, default=ContractState.LISTED)
    book_sequence = models.BigIntegerField(default=0, help_text="bumped by every change of the public book")
    trading_mode = models.CharField(max_length=10, choices=TradingMode.choices, default=TradingMode.AUCTION)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["expiry_date", "pair_id", "kind", "strike_px"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "expiry_date", "kind", "strike_px"], nulls_distinct=False,
                                    name="contract_unique_terms"),
            models.CheckConstraint(condition=Q(kind__in=[k.value for k in ContractKind]), name="contract_kind_valid"),
            models.CheckConstraint(condition=Q(state__in=ContractState.values), name="contract_state_valid"),
            models.CheckConstraint(condition=Q(floor_px__gte=0), name="contract_floor_non_negative"),
            models.CheckConstraint(condition=Q(cap_px__gt=F("floor_px")), name="contract_cap_above_floor"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="contract_tick_positive"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="contract_lot_positive"),
            models.CheckConstraint(condition=Q(book_sequence__gte=0), name="contract_book_sequence_non_negative"),
            models.CheckConstraint(condition=Q(trading_mode__in=TradingMode.values),
                                   name="contract_trading_mode_valid"),
            models.CheckConstraint(
                condition=(Q(kind__in=_STRIKELESS, strike_px__isnull=True))
                | (~Q(kind__in=_STRIKELESS)
                   & Q(strike_px__isnull=False, strike_px__gte=F("floor_px"), strike_px__lte=F("cap_px"))),
                name="contract_strike_within_bounds",
            ),
            models.CheckConstraint(
                condition=Q(kind=ContractKind.PERPETUAL.value, expiry_date__isnull=True,
                            trading_mode=TradingMode.CONTINUOUS)
                | (~Q(kind=ContractKind.PERPETUAL.value) & Q(expiry_date__isnull=False)),
                name="contract_perpetual_has_no_expiry"),
        ]
        indexes = [models.Index(fields=["state", "expiry_date"])]

    def __str__(self) -> str:
        return self.symbol

    @property
    def is_perpetual(self) -> bool:
        return self.kind == ContractKind.PERPETUAL

    @property
    def expires_at(self) -> datetime | None:
        return None if self.expiry_date is None else expiry_at(self.expiry_date)

    @property
    def trading_ends_at(self) -> datetime | None:
        return None if self.expiry_date is None else trading_ends_at(self.expiry_date)

    def trading_ended(self, now: datetime) -> bool:
        """Whether trading stopped by ``now`` (from 00:00 UTC of the expiry day); a perpetual's never does."""
        return self.expiry_date is not None and now >= trading_ends_at(self.expiry_date)

    @property
    def price_min(self) -> Decimal:
        """The lowest order price: one tick above the lowest value the contract can have (a buy at that
        value, or a sell at the highest, would hold no collateral)."""
        return price_bounds(self.terms)[0] + self.tick_size

    @property
    def price_max(self) -> Decimal:
        """The highest order price: one tick below the most the contract can be worth."""
        return price_bounds(self.terms)[1] - self.tick_size

    @cached_property
    def terms(self) -> Terms:
        return Terms(kind=ContractKind(self.kind), floor=self.floor_px, cap=self.cap_px, strike=self.strike_px)

    @staticmethod
    def symbol_for(*, pair: Pair, expiry_date: date | None, kind: str, strike_px: Decimal | None) -> str:
        """BTC-USDC-20261225-50000-C; futures end in -F without a strike; a perpetual is BTC-USDC-PERP."""
        if kind == ContractKind.PERPETUAL:
            return f"{pair.base.symbol}-{pair.quote.symbol}-PERP"
        parts = [pair.base.symbol, pair.quote.symbol, expiry_date.strftime("%Y%m%d")]
        if strike_px is not None:
            parts.append(format(strike_px.normalize(), "f"))
        parts.append({"call": "C", "put": "P", "future": "F"}[kind])
        return "-".join(parts)


class TradingModeChange(models.Model):
    """An operator moved a contract from one trading mode to the other (``contract_trading_mode_set``):
    who, why, when, and how many open orders the move cancelled. Append-only: written by the service,
    never edited."""

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="trading_mode_changes")
    from_mode = models.CharField(max_length=10, choices=TradingMode.choices)
    to_mode = models.CharField(max_length=10, choices=TradingMode.choices)
    changed_by = models.CharField(max_length=150, help_text="the operator's user name")
    reason = models.TextField(blank=True)
    orders_cancelled = models.PositiveIntegerField(default=0, help_text="open orders cancelled by the change")
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(from_mode__in=TradingMode.values, to_mode__in=TradingMode.values),
                                   name="trading_mode_change_modes_valid"),
            models.CheckConstraint(condition=~Q(from_mode=F("to_mode")), name="trading_mode_change_changes"),
            models.CheckConstraint(condition=~Q(changed_by=""), name="trading_mode_change_has_author"),
        ]
        indexes = [models.Index(fields=["contract", "at"])]

    def __str__(self) -> str:
        return f"{self.contract} {self.from_mode} -> {self.to_mode} at {self.at:%Y-%m-%d %H:%M:%S}"
