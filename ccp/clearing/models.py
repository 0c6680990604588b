"""The trade ledger: one row per execution, whatever the venue that matched it."""

from django.db import models
from django.db.models import F, Q

from ccp.money import MoneyField
from ccp.orders.models import Side


class Venue(models.TextChoices):
    AUCTION = "auction"
    BOOK = "book"
    RFQ = "rfq"
    LIQUIDATION = "liquidation"


class Trade(models.Model):
    """A buy order and a sell order meeting at a price. ``venue_ref`` names the venue's event (an
    auction's ``auction-42``); one trade per (venue, venue ref, buy order, sell order), so booking the
    same trades twice has one effect. ``sequence`` numbers a contract's trades 1, 2, 3, ... in the
    order they were booked (the public trade stream's sequence)."""

    id = models.BigAutoField(primary_key=True)
    venue = models.CharField(max_length=16, choices=Venue.choices)
    venue_ref = models.CharField(max_length=64)
    # No foreign key checks in the database: five per trade at commit doubled an auction's commit
    # (bench/auction.py). trades_book is the only writer and takes the ids from rows its caller holds
    # locked; orders, clients and contracts are never deleted. The unique (contract, sequence) and
    # (client, id) indexes serve the contract and client columns.
    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="trades",
                                 db_index=False, db_constraint=False)
    sequence = models.BigIntegerField()
    price = MoneyField()
    quantity = MoneyField()
    buy_order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="buy_trades",
                                  db_constraint=False)
    buy_client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="buy_trades",
                                   db_index=False, db_constraint=False)
    sell_order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="sell_trades",
                                   db_constraint=False)
    sell_client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="sell_trades",
                                    db_index=False, db_constraint=False)
    aggressor_side = models.CharField(max_length=4, choices=Side.choices, null=True, blank=True,
                                      help_text="the side that took liquidity; none in an auction")
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "sequence"], name="trade_unique_contract_sequence"),
            models.UniqueConstraint(fields=["venue", "venue_ref", "buy_order", "sell_order"],
                                    name="trade_unique_venue_orders"),
            models.CheckConstraint(condition=Q(venue__in=Venue.values), name="trade_venue_valid"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gte=0), name="trade_price_non_negative"),
            models.CheckConstraint(condition=Q(sequence__gt=0), name="trade_sequence_positive"),
            models.CheckConstraint(condition=~Q(buy_order=F("sell_order")), name="trade_orders_differ"),
            models.CheckConstraint(condition=Q(aggressor_side__isnull=True) | Q(aggressor_side__in=Side.values),
                                   name="trade_aggressor_side_valid"),
        ]
        indexes = [
            # A client's fills, newest first (GET /fills reads each side by client and id).
            models.Index(fields=["buy_client", "-id"], name="trade_buy_client"),
            models.Index(fields=["sell_client", "-id"], name="trade_sell_client"),
        ]

    def __str__(self) -> str:
        return f"trade {self.pk} {self.quantity} {self.contract_id} @ {self.price} ({self.venue_ref})"
