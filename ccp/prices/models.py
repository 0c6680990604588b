from django.db import models
from django.db.models import Q

from ccp.money import MoneyField


class Venue(models.TextChoices):
    GEMINI = "gemini", "Gemini"
    COINBASE = "coinbase", "Coinbase"
    BINANCE = "binance", "Binance"


class VenueSymbol(models.Model):
    """How a venue names a pair (its ccxt symbol), e.g. BTC/USDC is BTC/USD on Gemini and BTC/USDT on Binance."""

    pair = models.ForeignKey("contracts.Pair", on_delete=models.CASCADE, related_name="venue_symbols")
    venue = models.CharField(max_length=16, choices=Venue.choices)
    symbol = models.CharField(max_length=32, help_text="the venue's market, as ccxt names it: BASE/QUOTE")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["pair_id", "venue"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "venue"], name="venue_symbol_unique_pair_venue"),
            models.CheckConstraint(condition=Q(venue__in=Venue.values), name="venue_symbol_venue_valid"),
            models.CheckConstraint(condition=Q(symbol__regex=r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$"),
                                   name="venue_symbol_format"),
        ]

    def __str__(self) -> str:
        return f"{self.pair} on {self.venue}: {self.symbol}"


class SpotPrice(models.Model):
    """A pair's price at a time, from one venue, or the settlement price fixed from several venues."""

    SETTLEMENT_SOURCE = "settlement"

    pair = models.ForeignKey("contracts.Pair", on_delete=models.PROTECT, related_name="spot_prices")
    source = models.CharField(max_length=32, help_text="venue name, or 'settlement'")
    price = MoneyField()
    observed_at = models.DateTimeField(help_text="the time the price is for")
    fetched_at = models.DateTimeField()
    is_settlement = models.BooleanField(default=False)
    venues = models.JSONField(default=list, blank=True, help_text="venues a settlement price was fixed from")

    class Meta:
        ordering = ["-observed_at"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "source", "observed_at"], name="spot_unique_source_time"),
            models.CheckConstraint(condition=Q(price__gt=0), name="spot_price_positive"),
            models.CheckConstraint(condition=Q(is_settlement=False) | Q(source="settlement"),
                                   name="spot_settlement_source"),
        ]
        indexes = [models.Index(fields=["pair", "-observed_at"])]

    def __str__(self) -> str:
        return f"{self.pair} {self.price} @ {self.observed_at:%Y-%m-%d %H:%M} ({self.source})"


class ReferencePriceKind(models.TextChoices):
    INITIAL = "initial", "initial (before the first match)"
    CLEARING = "clearing", "auction clearing price"


class ReferencePrice(models.Model):
    """A contract's reference: its initial price, then each clearing price."""

    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="reference_prices")
    kind = models.CharField(max_length=8, choices=ReferencePriceKind.choices)
    price = MoneyField()
    at = models.DateTimeField()
    auction_ref = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["contract_id", "-at"]
        constraints = [
            models.UniqueConstraint(fields=["contract"], condition=Q(kind="initial"), name="reference_one_initial"),
            models.UniqueConstraint(fields=["contract", "auction_ref"], condition=Q(kind="clearing"),
                                    name="reference_one_per_auction"),
            models.CheckConstraint(condition=Q(kind__in=ReferencePriceKind.values), name="reference_kind_valid"),
            models.CheckConstraint(condition=Q(price__gte=0), name="reference_price_non_negative"),
            models.CheckConstraint(condition=Q(kind="initial") | ~Q(auction_ref=""),
                                   name="reference_clearing_has_auction"),
        ]
        indexes = [models.Index(fields=["contract", "-at"])]

    def __str__(self) -> str:
        return f"{self.contract} {self.price} ({self.kind})"
