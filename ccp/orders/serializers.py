"""Order representations shared by the REST API and the private WebSocket stream."""

from datetime import UTC, datetime

from rest_framework import serializers

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
    order_value = MoneyField(read_only=True)

    class Meta:
        model = Order
        fields = ["id", "client_order_id", "contract", "side", "kind", "price", "quantity", "filled_quantity",
                  "state", "reject_reason", "order_value", "cancel_requested_at", "created_at", "updated_at"]


class OrderDetailSerializer(OrderSerializer):
    history = OrderStateHistorySerializer(many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "history"]


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
        "filled_quantity": money_str(order.filled_quantity), "state": order.state,
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
