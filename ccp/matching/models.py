from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from psycopg.types.json import Json

from ccp.matching.auction import canonical_json
from ccp.money import MoneyField


class DocumentField(models.JSONField):
    """A large JSON document kept as the canonical text it was written in (``canonical_json``):
    PostgreSQL ``json``, which stores the text as it is, so a hash of the stored text is the
    document's hash, and writing it skips jsonb's parse (a 100,000-order input is 17 MB). The
    migration gives its columns LZ4 compression. Reads give the parsed document; jsonb-only
    lookups (has_key, contains) do not apply."""

    def db_type(self, connection) -> str:
        return "json"

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        return None if value is None else Json(value, dumps=canonical_json)

    def from_db_value(self, value, expression, connection):
        # psycopg parses ``json`` itself (Django only asks it for jsonb as text).
        return super().from_db_value(value, expression, connection) if isinstance(value, str) else value


class AuctionState(models.TextChoices):
    OPEN = "open", "open (waiting for its snapshot)"
    CLOSED = "closed", "closed (book snapshot taken)"
    SOLVED = "solved", "solved"
    APPLIED = "applied", "applied (fills booked)"


class Auction(models.Model):
    """One batch auction of a group of contracts (a pair), with its exact input and result.

    ``input_document`` is replayable with ``manage.py auction_replay``; ``input_hash`` identifies it.
    One auction per group and time slot: a duplicated start finds the existing row.
    """

    group = models.CharField(max_length=32, help_text="the pair whose contracts it clears, e.g. BTC/USDC")
    slot = models.DateTimeField(help_text="the beat slot that opened it")
    state = models.CharField(max_length=8, choices=AuctionState.choices, default=AuctionState.OPEN)
    input_document = DocumentField(null=True, blank=True)
    input_hash = models.CharField(max_length=64, blank=True)
    result_document = DocumentField(null=True, blank=True)
    status = models.CharField(max_length=10, blank=True, help_text="optimal, feasible or fallback")
    solver = models.CharField(max_length=80, blank=True)
    welfare = MoneyField(null=True, blank=True)
    upper_bound = MoneyField(null=True, blank=True)
    order_ids = ArrayField(models.BigIntegerField(), default=list, blank=True,
                           help_text="the orders in its snapshot: held until it is applied")
    orders_count = models.PositiveIntegerField(default=0)
    fills_count = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True)
    dropped = models.JSONField(default=dict, blank=True, help_text=(
        "what its apply left out because the contracts had stopped trading: their symbols, the fills not "
        "booked, the orders cancelled (contract_halted)"))
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "slot"], name="auction_unique_group_slot"),
            # Auctions of a pair run one after another: one not applied at a time.
            models.UniqueConstraint(fields=["group"], condition=~Q(state=AuctionState.APPLIED),
                                    name="auction_one_unapplied_per_group"),
            models.CheckConstraint(condition=Q(state__in=AuctionState.values), name="auction_state_valid"),
            models.CheckConstraint(condition=Q(state=AuctionState.OPEN) | Q(input_document__isnull=False),
                                   name="auction_closed_has_input"),
            models.CheckConstraint(
                condition=Q(state__in=[AuctionState.OPEN, AuctionState.CLOSED]) | Q(result_document__isnull=False),
                name="auction_solved_has_result"),
        ]
        indexes = [models.Index(fields=["group", "state"])]

    def __str__(self) -> str:
        return f"auction {self.pk} {self.group} {self.slot:%Y-%m-%d %H:%M:%S} ({self.state})"

    @property
    def ref(self) -> str:
        """The origin reference of its cash movements and reference prices."""
        return f"auction-{self.pk}"


class AuctionReservation(models.Model):
    """Free collateral an auction set aside at its close for one client in one currency
    (``ccp.matching.services``): held in the fund lock's ``order_value`` from the close until the apply,
    which releases it (``released_at``) in the fills' transaction. ``bound``: the reservation was capped
    by the client's available collateral, so its collateral may bind in the auction."""

    auction = models.ForeignKey(Auction, on_delete=models.PROTECT, related_name="reservations")
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="+")
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    amount = MoneyField(help_text="collateral set aside: min(available, stand-alone worst cases - holds)")
    held = MoneyField(help_text="what the client's orders in the auction held at its close")
    standalone = MoneyField(help_text="the stand-alone worst cases of those orders")
    bound = models.BooleanField(default=False)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["auction", "client", "currency"], name="reservation_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="reservation_amount_non_negative"),
        ]

    def __str__(self) -> str:
        return f"auction {self.auction_id} client {self.client_id}: {self.amount}"
