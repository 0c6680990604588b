from decimal import Decimal

from django.db import models
from django.db.models import Q

from ccp.money import ZERO, MoneyField, money_str


class CashMovementOrigin(models.TextChoices):
    AUCTION = "auction", "auction fill (premium)"
    BOOK = "book", "continuous book fill (premium)"
    EXPIRY = "expiry", "expiry payoff"
    WITHDRAWAL = "withdrawal", "withdrawal"
    ADJUSTMENT = "adjustment", "operator adjustment"
    VARIATION = "variation", "perpetual variation settlement"
    FUNDING = "funding", "perpetual funding"
    LIQUIDATION_FEE = "liquidation_fee", "perpetual liquidation fee (to the insurance fund)"
    LIQUIDATION = "liquidation", "perpetual liquidation trade (takeover, ADL)"
    INSURANCE = "insurance", "insurance fund cover of a loss beyond a trader's collateral"


# Origins whose movements are one balanced journal per origin ref (an auction's premiums, an expiry's payoffs, a
# book batch, a funding time, a liquidation): they move collateral between clients, so they settle on chain.
BALANCED_ORIGINS = (CashMovementOrigin.AUCTION, CashMovementOrigin.BOOK, CashMovementOrigin.EXPIRY,
                    CashMovementOrigin.VARIATION, CashMovementOrigin.FUNDING, CashMovementOrigin.LIQUIDATION,
                    CashMovementOrigin.LIQUIDATION_FEE, CashMovementOrigin.INSURANCE)


class CashMovement(models.Model):
    """Collateral to move for a client, with the position change it pays for (if any).

    Movements of one auction or one expiry sum to zero. The unique origin key makes producing
    them twice impossible: a retried auction or expiry finds its rows already there.
    """

    # No database foreign key checks: three per row at commit were a third of an auction's commit
    # (bench/auction.py). Every writer holds the client's fund lock of the currency (or the withdrawal)
    # and the contract's row locked; clients, currencies and contracts are never deleted.
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="cash_movements",
                               db_constraint=False)
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+",
                                 db_constraint=False)
    amount = MoneyField(help_text="signed: positive credits the client")
    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="cash_movements", db_constraint=False)
    position_delta = MoneyField(default=ZERO, help_text="signed: positive bought, negative sold")
    origin = models.CharField(max_length=16, choices=CashMovementOrigin.choices)
    origin_ref = models.CharField(max_length=64, help_text="auction id, expiry key or withdrawal id")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["origin", "origin_ref", "client", "contract"], nulls_distinct=False,
                                    name="cash_movement_unique_origin"),
            models.CheckConstraint(condition=Q(origin__in=CashMovementOrigin.values),
                                   name="cash_movement_origin_valid"),
            models.CheckConstraint(condition=~Q(origin_ref=""), name="cash_movement_origin_ref_present"),
            models.CheckConstraint(condition=~Q(amount=0) | ~Q(position_delta=0), name="cash_movement_not_empty"),
            models.CheckConstraint(condition=Q(position_delta=0) | Q(contract__isnull=False),
                                   name="cash_movement_position_needs_contract"),
        ]
        indexes = [models.Index(fields=["origin", "origin_ref"])]

    def __str__(self) -> str:
        sign = "+" if self.amount >= 0 else ""
        return f"{self.client} {sign}{money_str(self.amount)} {self.currency} ({self.origin} {self.origin_ref})"


class TrackingState(models.TextChoices):
    PENDING = "pending"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REPLACED = "replaced"


LIVE_TRACKING_STATES = [TrackingState.PENDING, TrackingState.SUBMITTED, TrackingState.CONFIRMED]


class CashMovementTracking(models.Model):
    """One attempt to perform a cash movement on chain, in a batch transaction."""

    cash_movement = models.ForeignKey(CashMovement, on_delete=models.PROTECT, related_name="trackings")
    state = models.CharField(max_length=10, choices=TrackingState.choices, default=TrackingState.PENDING)
    batch_id = models.CharField(max_length=66, help_text="0x + 32 bytes: the id the FundLock contract applies once")
    tx_hash = models.CharField(max_length=66, null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["cash_movement"], condition=Q(state__in=LIVE_TRACKING_STATES),
                                    name="tracking_one_live_per_movement"),
            models.CheckConstraint(condition=Q(state__in=TrackingState.values), name="tracking_state_valid"),
            models.CheckConstraint(condition=Q(tx_hash__isnull=True) | Q(tx_hash__regex=r"^0x[0-9a-f]{64}$"),
                                   name="tracking_tx_hash_format"),
            models.CheckConstraint(
                condition=~Q(state__in=[TrackingState.SUBMITTED, TrackingState.CONFIRMED]) | Q(tx_hash__isnull=False),
                name="tracking_sent_has_tx_hash",
            ),
            models.CheckConstraint(condition=~Q(state=TrackingState.CONFIRMED) | Q(block_number__isnull=False),
                                   name="tracking_confirmed_has_block"),
            models.CheckConstraint(condition=Q(block_number__isnull=True) | Q(block_number__gte=0),
                                   name="tracking_block_non_negative"),
            models.CheckConstraint(condition=Q(batch_id__regex=r"^0x[0-9a-f]{64}$"), name="tracking_batch_id_format"),
        ]
        # Confirmation and replacement find a batch's trackings by its transaction.
        indexes = [models.Index(fields=["tx_hash"], name="tracking_tx_hash")]

    def __str__(self) -> str:
        return f"movement {self.cash_movement_id}: {self.state} {self.tx_hash or ''}"


class ChainContract(models.Model):
    """A contract the backend talks to (FundLock, and the demo token), recorded by ``chain_deploy``."""

    name = models.CharField(max_length=32, unique=True)
    address = models.CharField(max_length=42)
    chain_id = models.BigIntegerField()
    deployed_block = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(address__regex=r"^0x[0-9a-f]{40}$"),
                                              name="chain_contract_address_format")]

    def __str__(self) -> str:
        return f"{self.name} {self.address} (chain {self.chain_id})"


class Deposit(models.Model):
    """A FundLock Deposit event credited to a client's fund lock, once (its log is the key)."""

    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="deposits")
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    amount = MoneyField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["block_number", "log_index"]
        constraints = [
            models.UniqueConstraint(fields=["tx_hash", "log_index"], name="deposit_unique_log"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="deposit_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.client} +{money_str(self.amount)} {self.currency} (block {self.block_number})"


class BatchState(models.TextChoices):
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REPLACED = "replaced"


class SettlementBatch(models.Model):
    """One transaction carrying many cash movements to the FundLock contract. Its ``batch_id`` is what
    the contract applies once; a retry or a replacement reuses it, so it can never apply twice."""

    batch_id = models.CharField(max_length=66)
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    nonce = models.BigIntegerField()
    gas_price = models.DecimalField(max_digits=40, decimal_places=0)
    tx_hash = models.CharField(max_length=66, unique=True)
    raw_tx = models.BinaryField()
    state = models.CharField(max_length=10, choices=BatchState.choices, default=BatchState.SUBMITTED)
    block_number = models.BigIntegerField(null=True, blank=True)
    movements_count = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "settlement batches"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=BatchState.values), name="batch_state_valid"),
            models.CheckConstraint(condition=Q(nonce__gte=0), name="batch_nonce_non_negative"),
            models.UniqueConstraint(fields=["batch_id"], condition=Q(state__in=["submitted", "confirmed"]),
                                    name="batch_one_live_transaction"),
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id[:10]}… nonce {self.nonce} ({self.state})"


class OperatorNonce(models.Model):
    """The next nonce of the operator account: taken under a row lock, so two workers never collide."""

    address = models.CharField(max_length=42, unique=True)
    next_nonce = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(next_nonce__gte=0), name="nonce_non_negative")]


class WithdrawalState(models.TextChoices):
    PENDING = "pending", "approved, release on chain pending"
    RELEASED = "released", "released: withdrawable from the contract"


class Withdrawal(models.Model):
    """A client's approved withdrawal: its cash movement reserves the amount at once (available drops),
    settlement releases it on chain into the client's withdrawable balance."""

    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="withdrawals")
    client_withdrawal_id = models.CharField(max_length=64, help_text="the client's idempotency key")
    currency = models.ForeignKey("contracts.Currency", on_delete=models.PROTECT, related_name="+")
    amount = MoneyField()
    cash_movement = models.OneToOneField(CashMovement, on_delete=models.PROTECT, related_name="withdrawal")
    state = models.CharField(max_length=8, choices=WithdrawalState.choices, default=WithdrawalState.PENDING)
    created_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="withdrawal_amount_positive"),
            models.CheckConstraint(condition=Q(state__in=WithdrawalState.values), name="withdrawal_state_valid"),
            models.UniqueConstraint(fields=["client", "client_withdrawal_id"],
                                    name="withdrawal_unique_client_withdrawal_id"),
        ]

    def __str__(self) -> str:
        return f"{self.client} -{money_str(self.amount)} {self.currency} ({self.state})"


class ChainBalance(models.Model):
    """What the FundLock contract held for a fund lock when the reconciliation last compared them: shown
    beside the fund lock so an operator sees a drift without reading the chain."""

    fund_lock = models.OneToOneField("accounts.FundLock", on_delete=models.CASCADE, related_name="chain_balance")
    balance = MoneyField(help_text="the contract's balances(token, client), in tokens")
    fundlock = MoneyField(help_text="the fund lock's fundlock it was compared with")
    block_number = models.BigIntegerField(help_text="the block it was read at (the deposit monitor's edge)")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="chain_balance_non_negative")]

    @property
    def difference(self) -> Decimal:
        """On chain minus the backend's fundlock: zero when they reconcile."""
        return self.balance - self.fundlock

    def __str__(self) -> str:
        return f"{self.fund_lock}: {money_str(self.balance)} on chain at block {self.block_number}"
