from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from eth_utils import to_checksum_address

from ccp.money import ZERO, MoneyField
from ccp.risk.collateral import available

ADDRESS_REGEX = r"^0x[0-9a-f]{40}$"


class Client(models.Model):
    """A trader, identified by an Ethereum address (stored lower-case), registered at its first deposit."""

    address = models.CharField(max_length=42, unique=True)
    registered_at = models.DateTimeField()
    stream_sequence = models.BigIntegerField(
        default=0, help_text="the last sequence number given to a private stream message (ccp.streams)")

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(address__regex=ADDRESS_REGEX), name="client_address_format")]

    def __str__(self) -> str:
        return self.checksum_address

    @property
    def checksum_address(self) -> str:
        return to_checksum_address(self.address)

    # DRF treats the authenticated principal as request.user.
    is_authenticated = True
    is_anonymous = False


class FundLock(models.Model):
    """A client's collateral in one currency.

    ``fundlock`` is what the chain monitor last saw on the FundLock contract, ``order_value`` is held
    by open orders, ``settle_value`` is the signed sum of cash movements not yet performed on chain,
    ``lockup_value`` is the sum of the client's lockups in this currency and ``margin_value`` what its
    perpetual positions hold (``ccp.perps.accounting``), kept with them so the database itself
    guarantees available = fundlock + settle - order - lockups - margin >= 0: the rule of
    ``ccp.risk.collateral``.
    """

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="fund_locks")
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    fundlock = MoneyField(default=ZERO)
    order_value = MoneyField(default=ZERO)
    settle_value = MoneyField(default=ZERO)
    lockup_value = MoneyField(default=ZERO)
    # Signed: a perpetual position that already paid more than its margin in cash holds less than nothing.
    margin_value = MoneyField(default=ZERO, db_default=ZERO)
    # The insurance fund's (ccp.perps.fund): its available may fall below zero, a loss beyond the fund that the
    # clearing house carries until operators refill it (an operator alert says so).
    insurance_fund = models.BooleanField(default=False, db_default=False)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["client_id", "currency_id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "currency"], name="fundlock_unique_client_currency"),
            models.CheckConstraint(condition=Q(fundlock__gte=0), name="fundlock_non_negative"),
            models.CheckConstraint(condition=Q(order_value__gte=0), name="fundlock_order_value_non_negative"),
            models.CheckConstraint(condition=Q(lockup_value__gte=0), name="fundlock_lockup_value_non_negative"),
            models.CheckConstraint(
                condition=Q(fundlock__gte=F("order_value") + F("lockup_value") + F("margin_value")
                            - F("settle_value")) | Q(insurance_fund=True),
                name="fundlock_available_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.currency}"

    @property
    def available(self) -> Decimal:
        return available(self)  # ccp.risk.collateral: the one rule


class SignInChallenge(models.Model):
    """A sign-in nonce issued to an address with the exact message it must sign. Good once."""

    nonce = models.CharField(max_length=32, unique=True)
    address = models.CharField(max_length=42)
    message = models.TextField()
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.CheckConstraint(condition=Q(address__regex=ADDRESS_REGEX), name="challenge_address_format"),
            models.CheckConstraint(condition=Q(nonce__regex=r"^[A-Za-z0-9]{16,32}$"), name="challenge_nonce_format"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("issued_at")), name="challenge_expiry_after_issue"),
            models.CheckConstraint(condition=Q(used_at__isnull=True) | Q(used_at__gte=F("issued_at")),
                                   name="challenge_used_after_issue"),
        ]

    def __str__(self) -> str:
        return f"{self.nonce} for {self.address}"


class ApiToken(models.Model):
    """A bearer token for the API and the private WebSocket stream. Only its SHA-256 is stored."""

    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="first characters, to recognise a token")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="token_hash_format"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="token_expiry_after_creation"),
            models.CheckConstraint(condition=Q(revoked_at__isnull=True) | Q(revoked_at__gte=F("created_at")),
                                   name="token_revoked_after_creation"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.client})"
