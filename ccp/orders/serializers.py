"""Order representations shared by the REST API and the private WebSocket stream."""

import functools
import operator
from datetime import datetime

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ccp.clearing.selectors import order_fills
from ccp.clearing.serializers import FillSerializer
from ccp.clock import iso_utc
from ccp.money import money_str
from ccp.orders.models import ORDER_FIELDS, Order, OrderStateHistory
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
    trigger_price = MoneyField(read_only=True, allow_null=True)
    parent = serializers.IntegerField(source="parent_id", read_only=True, allow_null=True,
                                      help_text="a take-profit or stop-loss leg: the entry that armed it")
    attached = serializers.JSONField(read_only=True, allow_null=True,
                                     help_text="an entry's take-profit and stop-loss, as sent")

    class Meta:
        model = Order
        fields = list(ORDER_FIELDS)


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


def _field_forms() -> dict[str, object]:
    """How order_payload writes each of ORDER_FIELDS: the form OrderSerializer gives it. The text of
    an amount or a time depends on its value only, and an auction's orders share most of them (price
    levels, quantities, the time it applies at): each is formatted once (bounded caches)."""
    money = functools.lru_cache(maxsize=8192)(money_str)
    iso = functools.lru_cache(maxsize=8192)(_iso)
    forms: dict[str, object] = {}
    for name in ORDER_FIELDS:
        field = Order._meta.get_field(name)
        if name == "contract":
            forms[name] = lambda order: order.contract.symbol
        elif isinstance(field, models.DecimalField):
            forms[name] = lambda order, name=name: (None if (v := getattr(order, name)) is None else money(v))
        elif isinstance(field, models.ForeignKey):
            forms[name] = operator.attrgetter(field.attname)
        elif isinstance(field, models.DateTimeField):
            forms[name] = lambda order, name=name: iso(getattr(order, name))
        else:
            forms[name] = operator.attrgetter("pk" if name == "id" else name)
    return forms


def order_payload(order) -> dict:
    """The same representation as OrderSerializer, built directly: auctions push tens of thousands.
    ``order`` is an Order or an OrderRow."""
    return {name: form(order) for name, form in _FORMS.items()}


def _iso(value: datetime | None) -> str | None:
    """DRF's DateTimeField output (``ccp.clock.iso_utc``) without its per-call time-zone machinery (most
    of order_payload's cost); None stays None."""
    return None if value is None else iso_utc(value)


_FORMS = _field_forms()
