from django.db import models
from django.db.models import Q

from ccp.money import ZERO, MoneyField


class Position(models.Model):
    """A client's signed quantity in a contract: positive long (bought), negative short (sold), with
    the premiums paid for its open quantity (its cost), the average price it was entered at and the
    PnL realised so far (``ccp.risk.positions`` has the rules; ``ccp.clearing.booking`` writes them,
    for trades and for expiry)."""

    # No index of their own: the unique (client, contract) and position_written (contract, ...) lead with them.
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="positions",
                               db_index=False)
    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="positions",
                                 db_index=False)
    quantity = MoneyField(default=ZERO)
    cost = MoneyField(default=ZERO, help_text="premiums paid for the open quantity (negative: received)")
    entry_price = MoneyField(null=True, blank=True, help_text="average price of the open quantity; none when flat")
    realised_pnl = MoneyField(default=ZERO, help_text="realised PnL - cost = the position's cash movements")
    # Perpetuals only (empty and 0 for a dated position): ccp.perps.accounting.
    margin_mode = models.CharField(max_length=8, blank=True, default="", db_default="",
                                   help_text="a perpetual position's: cross or isolated")
    margin = MoneyField(default=ZERO, db_default=ZERO, help_text="isolated: its collateral; cross: its initial margin")
    # An isolated perpetual position's trigger prices (ccp.perps.margin), kept with every change of the position
    # so a new mark finds the positions it reaches through an index, without walking the others.
    liquidation_px = MoneyField(null=True, blank=True,
                                help_text="isolated: the first mark that liquidates it; empty: none does")
    call_px = MoneyField(null=True, blank=True,
                         help_text="isolated: the first mark that sends its margin call (before liquidation)")
    # The same, signed (a short's negative): one plain index per price finds the positions a mark reaches on both
    # sides, a long's key at or above the mark, a short's in [-mark, 0), with the column's own statistics.
    liquidation_key = MoneyField(null=True, blank=True)
    call_key = MoneyField(null=True, blank=True)
    margin_called_at = models.DateTimeField(null=True, blank=True,
                                            help_text="its last margin call; cleared when the position changes")
    updated_at = models.DateTimeField()
    # Not a field: the column written_xid (bigint), the transaction that last wrote the row, set by the trigger
    # risk_position_written on every INSERT and UPDATE whoever writes (ORM, bulk upsert, COPY, QuerySet.update),
    # with its index position_written (contract_id, written_xid): the liquidation engine's live index
    # (ccp.perps.live) reads only the rows written since its last sync. Kept out of the model so that the bulk
    # writers, which send every field, never carry a value the trigger overwrites (migration 0007).

    class Meta:
        ordering = ["client_id", "contract_id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "contract"], name="position_unique_client_contract"),
            # Positions booked before entry prices were kept have none: only a flat one must have none.
            models.CheckConstraint(condition=~Q(quantity=0) | Q(entry_price__isnull=True, cost=0),
                                   name="position_flat_has_no_entry"),
            models.CheckConstraint(condition=Q(margin_mode__in=["", "cross", "isolated"]),
                                   name="position_margin_mode_valid"),
            models.CheckConstraint(condition=Q(liquidation_px__isnull=True, call_px__isnull=True,
                                             liquidation_key__isnull=True, call_key__isnull=True)
                                   | (Q(margin_mode="isolated") & ~Q(quantity=0)), name="position_triggers_isolated"),
        ]
        indexes = [  # the positions a mark reaches (ccp.perps.watch)
            models.Index(fields=["contract", "liquidation_key"], condition=Q(liquidation_key__isnull=False),
                         name="position_liquidation_key"),
            models.Index(fields=["contract", "call_key"], condition=Q(call_key__isnull=False),
                         name="position_call_key"),
            # the cross accounts holding a perpetual (ccp.perps.cross), without reading its isolated positions
            models.Index(fields=["contract", "client"], condition=Q(margin_mode="cross") & ~Q(quantity=0),
                         name="position_cross_holders"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.quantity:+} {self.contract}"


class Lockup(models.Model):
    """Collateral locked for a client's portfolio of one (expiry, pair): max(0, -worst-case payoff).

    Its sum per currency is mirrored in FundLock.lockup_value by the services that write lockups.
    """

    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="lockups",
                               db_index=False)  # the unique (client, pair, expiry) leads with it
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
