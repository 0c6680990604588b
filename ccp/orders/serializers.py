"""Order representations shared by the REST API and the private WebSocket stream."""

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ccp.clearing.selectors import order_fills
from ccp.clearing.serializers import FillSerializer
from ccp.money import money_str
from ccp.orders.models import Order, OrderStateHistory
from ccp.serializers import MoneyField


class OrderStateHistorySerializer(serializers.ModelSerializer):
    filled_quantity = MoneyField(read_only=True)

    class Meta:
        model = OrderStateHistory
        fields = ["from_state", "to_state", "reason", "filled_quantity", "at"]


class OrderSerializer(serializers.ModelSerializer):
    contract = serializers.CharField(source="contract.symbol", read_only=True)
    price = MoneyField(read_only=True)
    quantity = MoneyField(read_only=True)
    filled_quantity = MoneyField(read_only=True)
    average_fill_price = MoneyField(read_only=True, allow_null=True,
                                    help_text="quantity-weighted price of its fills; null before the first")
    order_value = MoneyField(read_only=True)

    class Meta:
        model = Order
        fields = ["id", "client_order_id", "contract", "side", "kind", "price", "quantity", "filled_quantity",
                  "average_fill_price", "last_fill_at", "state", "reject_reason", "order_value", "cancel_requested_at",
                  "created_at", "updated_at"]


class OrderDetailSerializer(OrderSerializer):
    history = OrderStateHistorySerializer(many=True, read_only=True)
    fills = serializers.SerializerMethodField()

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "history", "fills"]

    @extend_schema_field(FillSerializer(many=True))
    def get_fills(self, order: Order) -> list:
        """Its fills, oldest first."""
        return FillSerializer(order_fills(order_id=order.pk, side=order.side), many=True).data


class BookLevelSerializer(serializers.Serializer):
    price = MoneyField()
    quantity = MoneyField()
    orders = serializers.IntegerField()


class BookSerializer(serializers.Serializer):
    contract = serializers.CharField()
    sequence = serializers.IntegerField(help_text="the WebSocket book stream's sequence this snapshot matches")
    bids = BookLevelSerializer(many=True, help_text="best (highest) first")
    asks = BookLevelSerializer(many=True, help_text="best (lowest) first")


def order_payload(order) -> dict:
    """The same representation as OrderSerializer, built directly: auctions push tens of thousands.
    ``order`` is an Order or a row with its attributes (the auction's ``HeldOrder``)."""
    return {
        "id": order.pk, "client_order_id": order.client_order_id, "contract": order.contract.symbol,
        "side": order.side, "kind": order.kind, "price": money_str(order.price), "quantity": money_str(order.quantity),
        "filled_quantity": money_str(order.filled_quantity),
        "average_fill_price": None if order.average_fill_price is None else money_str(order.average_fill_price),
        "last_fill_at": _iso(order.last_fill_at), "state": order.state,
        "reject_reason": order.reject_reason, "order_value": money_str(order.order_value),
        "cancel_requested_at": _iso(order.cancel_requested_at), "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    """DRF's DateTimeField output for TIME_ZONE = "UTC" (ISO 8601, "Z" for UTC), without its per-call
    time-zone machinery (most of order_payload's cost)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
