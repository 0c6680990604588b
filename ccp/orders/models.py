from dataclasses import make_dataclass

from django.db import models
from django.db.models import F, Q

from ccp.money import ZERO, MoneyField
from ccp.orders.states import BOOK_STATES, TERMINAL_STATES, OrderState


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class OrderKind(models.TextChoices):
    LIMIT = "limit"
    MARKET = "market", "market (price: the protection price, the worst acceptable)"


class TimeInForce(models.TextChoices):
    GTC = "gtc", "good till cancelled"
    IOC = "ioc", "immediate or cancel"
    FOK = "fok", "fill or kill"
    POST_ONLY = "post_only", "post only (rejected when it would take)"


class SelfTrade(models.TextChoices):
    """What happens when an incoming order meets a resting order of the same client."""

    CANCEL_INCOMING = "cancel_incoming"
    CANCEL_RESTING = "cancel_resting"
    CANCEL_BOTH = "cancel_both"


class Trigger(models.TextChoices):
    """A conditional order: a stop fires when the price moves against the side that would close (a buy
    stop at or above its trigger price, a sell stop at or below), a take-profit the other way."""

    STOP = "stop"
    TAKE_PROFIT = "take_profit"


class TriggerSource(models.TextChoices):
    MARK = "mark"
    INDEX = "index"
    LAST = "last", "last trade"


class Leg(models.TextChoices):
    TAKE_PROFIT = "tp", "take-profit"
    STOP_LOSS = "sl", "stop-loss"


class Order(models.Model):
    """A client's order. Open ones form the book; every state change is kept in the history. In a
    continuous contract ``book_priority`` orders a resting order within its price level (time priority:
    the matching engine's sequence when it rested); an auction ignores it."""

    # No index of their own: (client, state), (contract, state) and the partial leg index lead with them
    # (each index costs every insert and most updates of an order).
    client = models.ForeignKey("accounts.Client", on_delete=models.PROTECT, related_name="orders", db_index=False)
    contract = models.ForeignKey("contracts.Contract", on_delete=models.PROTECT, related_name="orders",
                                 db_index=False)
    client_order_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices)
    kind = models.CharField(max_length=8, choices=OrderKind.choices, default=OrderKind.LIMIT)
    price = MoneyField()
    quantity = MoneyField()
    quantity_requested = MoneyField(null=True, blank=True,
                                    help_text="what the client asked for, when a reduce-only cut made quantity smaller")
    time_in_force = models.CharField(max_length=9, choices=TimeInForce.choices, default=TimeInForce.GTC)
    reduce_only = models.BooleanField(default=False)
    self_trade_prevention = models.CharField(max_length=15, choices=SelfTrade.choices,
                                             default=SelfTrade.CANCEL_INCOMING)
    book_priority = models.BigIntegerField(null=True, blank=True,
                                           help_text="continuous book: time priority while it rests")
    # Conditional orders (continuous contracts): a standalone stop or take-profit, or a leg an entry armed.
    trigger = models.CharField(max_length=11, choices=Trigger.choices, blank=True)
    trigger_price = MoneyField(null=True, blank=True)
    trigger_source = models.CharField(max_length=5, choices=TriggerSource.choices, blank=True)
    trigger_priority = models.BigIntegerField(null=True, blank=True, help_text="the engine's arming sequence")
    triggered_at = models.DateTimeField(null=True, blank=True)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="legs",
                               db_index=False,
                               help_text="the entry whose fills armed this take-profit or stop-loss leg")
    leg = models.CharField(max_length=2, choices=Leg.choices, blank=True)
    # An entry's take-profit and stop-loss: {"tp"|"sl": {"trigger_price", "trigger_source", "kind", "price"}}
    attached = models.JSONField(null=True, blank=True)
    # Perpetuals only: the leverage its opening part's margin is taken at, and the margin mode of the
    # position it opens (ccp.perps.accounting); none and empty for a dated contract's order.
    leverage = MoneyField(null=True, blank=True)
    margin_mode = models.CharField(max_length=8, blank=True, default="", db_default="")
    filled_quantity = MoneyField(default=ZERO)
    average_fill_price = MoneyField(null=True, blank=True, help_text="quantity-weighted price of its fills")
    last_fill_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=OrderState.choices, default=OrderState.RECEIVED)
    reject_reason = models.CharField(max_length=64, blank=True)
    # Why the last auction left it open or partly filled (the engine's reason: limit, collateral, priority,
    # halted); empty when no auction gave one.
    unfilled_reason = models.CharField(max_length=16, blank=True, default="", db_default="")
    order_value = MoneyField(default=ZERO, help_text="collateral held while the order is open")
    # A continuous contract's order modified to a new price or a larger size: it loses its time priority and
    # re-enters the book through the contract's matcher, which clears these (modify_reject_reason says why
    # it refused, if it did).
    modify_price = MoneyField(null=True, blank=True)
    modify_quantity = MoneyField(null=True, blank=True)
    modify_requested_at = models.DateTimeField(null=True, blank=True)
    modify_reject_reason = models.CharField(max_length=64, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True,
                                               help_text="cancel asked during an auction: done when it is applied")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "client_order_id"], name="order_unique_client_order_id"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="order_side_valid"),
            models.CheckConstraint(condition=Q(kind__in=OrderKind.values), name="order_kind_valid"),
            models.CheckConstraint(condition=Q(time_in_force__in=TimeInForce.values), name="order_tif_valid"),
            models.CheckConstraint(condition=Q(self_trade_prevention__in=SelfTrade.values), name="order_stp_valid"),
            models.CheckConstraint(condition=Q(trigger="", trigger_price__isnull=True, trigger_source="")
                                   | (Q(trigger__in=Trigger.values, trigger_price__isnull=False, trigger_price__gt=0,
                                        trigger_source__in=TriggerSource.values)), name="order_trigger_valid"),
            models.CheckConstraint(
                condition=Q(leg="", parent__isnull=True) | Q(leg__in=Leg.values, parent__isnull=False),
                name="order_leg_has_parent"),
            models.UniqueConstraint(fields=["parent", "leg"], condition=Q(parent__isnull=False),
                                    name="order_unique_leg"),
            models.CheckConstraint(condition=Q(state__in=OrderState.values), name="order_state_valid"),
            models.CheckConstraint(condition=Q(leverage__isnull=True, margin_mode="")
                                   | Q(leverage__isnull=False, leverage__gte=1, margin_mode__in=["cross", "isolated"]),
                                   name="order_margin_terms_valid"),
            models.CheckConstraint(condition=Q(price__gte=0), name="order_price_non_negative"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0, filled_quantity__lte=F("quantity")),
                                   name="order_filled_within_quantity"),
            models.CheckConstraint(condition=Q(order_value__gte=0), name="order_value_non_negative"),
            # Orders filled before fill prices were kept have none: only an unfilled order must have none.
            models.CheckConstraint(
                condition=Q(filled_quantity__gt=0) | Q(average_fill_price__isnull=True, last_fill_at__isnull=True),
                name="order_no_fill_price_unfilled",
            ),
            models.CheckConstraint(
                condition=Q(state=OrderState.FILLED, filled_quantity=F("quantity"))
                | (~Q(state=OrderState.FILLED) & Q(filled_quantity__lt=F("quantity"))),
                name="order_filled_state_matches_quantity",
            ),
            models.CheckConstraint(
                condition=~Q(state__in=[OrderState.RECEIVED, OrderState.REJECTED]) | Q(filled_quantity=0),
                name="order_unfilled_before_acceptance",
            ),
            models.CheckConstraint(condition=~Q(state__in=TERMINAL_STATES) | Q(order_value=0),
                                   name="order_terminal_holds_no_value"),
            models.CheckConstraint(condition=~Q(state=OrderState.REJECTED) | ~Q(reject_reason=""),
                                   name="order_rejected_has_reason"),
        ]
        indexes = [
            models.Index(fields=["contract", "state"]),
            models.Index(fields=["client", "state"]),
            # Orders waiting for validation (the stale-order sweep reads them every few seconds).
            models.Index(fields=["id"], name="order_received", condition=Q(state=OrderState.RECEIVED)),
            # Modifications waiting for a continuous contract's matcher.
            models.Index(fields=["contract"], name="order_modify_requested",
                         condition=Q(modify_requested_at__isnull=False)),
            # Cancels waiting for an auction: few at any time, read when it is applied.
            models.Index(fields=["contract"], name="order_cancel_requested",
                         condition=Q(cancel_requested_at__isnull=False, state__in=sorted(BOOK_STATES))),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.quantity} {self.contract} @ {self.price} ({self.state})"


# An order as the API and the private stream show it: OrderSerializer and order_payload both use this
# list, and take each field's form from the model (money as a string, times in ISO 8601, the contract
# by symbol).
ORDER_FIELDS = ("id", "client_order_id", "contract", "side", "kind", "price", "quantity", "quantity_requested",
                "time_in_force", "reduce_only", "self_trade_prevention", "trigger", "trigger_price", "trigger_source",
                "triggered_at", "parent", "leg", "attached", "filled_quantity", "average_fill_price",
                "last_fill_at", "state", "reject_reason", "unfilled_reason", "order_value", "cancel_requested_at",
                "created_at", "updated_at")
# Every column of the table, in model order: services that change tens of thousands of orders (an
# auction's apply) read them as plain rows of these columns (``order_rows_lock``) into OrderRow.
ORDER_COLUMNS = tuple(f.attname for f in Order._meta.concrete_fields)


def _pk(self) -> int:
    return self.id


# An order read as a plain row: the attributes order_payload and bulk_update_rows read, without a model
# instance's cost. ``contract`` is set by the reader (one Contract instance per contract).
OrderRow = make_dataclass("OrderRow", [*ORDER_COLUMNS, ("contract", object, None)], slots=True,
                          namespace={"pk": property(_pk)})


class OrderStateHistory(models.Model):
    """Append-only: one row per state change of an order."""

    # No database foreign key check: one per row at commit was a fifth of an auction's commit (bench/auction.py).
    # Every writer holds the order's row (locked, or inserted in its transaction); orders are never deleted.
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="history", db_constraint=False)
    from_state = models.CharField(max_length=16, choices=OrderState.choices, null=True, blank=True)
    to_state = models.CharField(max_length=16, choices=OrderState.choices)
    reason = models.CharField(max_length=64, blank=True)
    filled_quantity = MoneyField(default=ZERO)
    at = models.DateTimeField()

    class Meta:
        ordering = ["order_id", "id"]
        verbose_name_plural = "order state history"
        constraints = [
            models.CheckConstraint(condition=Q(to_state__in=OrderState.values), name="history_to_state_valid"),
            models.CheckConstraint(condition=Q(from_state__isnull=True) | Q(from_state__in=OrderState.values),
                                   name="history_from_state_valid"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0), name="history_filled_non_negative"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.from_state or '-'} -> {self.to_state}"
