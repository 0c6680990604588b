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


def _field_reader() -> tuple[operator.attrgetter, tuple[str, ...], tuple[str, ...]]:
    """How order_payload reads ORDER_FIELDS: one getter of every field's stored value (the contract's
    symbol, a foreign key's id) in that order, and the names of the amounts and of the times, which take
    the form OrderSerializer gives them."""
    names, amounts, times = [], [], []
    for name in ORDER_FIELDS:
        field = Order._meta.get_field(name)
        if name == "contract":
            names.append("contract.symbol")
        elif isinstance(field, models.ForeignKey):
            names.append(field.attname)
        else:
            names.append(name)
            if isinstance(field, models.DecimalField):
                amounts.append(name)
            elif isinstance(field, models.DateTimeField):
                times.append(name)
    return operator.attrgetter(*names), tuple(amounts), tuple(times)


def order_payload(order) -> dict:
    """The same representation as OrderSerializer, built directly: auctions push tens of thousands.
    ``order`` is an Order or an OrderRow. The text of an amount or a time depends on its value only, and
    an auction's orders share most of them (price levels, quantities, the time it applies at): each is
    formatted once (bounded caches). Every field is read by one C getter into a copy of a dict that has
    the keys already (a dict built key by key grows several times), not by a call per field."""
    payload = _KEYS.copy()
    payload.update(zip(ORDER_FIELDS, _READ(order), strict=True))
    for name in _AMOUNTS:
        if (value := payload[name]) is not None:
            payload[name] = _money(value)
    for name in _TIMES:
        payload[name] = _iso_once(payload[name])
    return payload


def _iso(value: datetime | None) -> str | None:
    """DRF's DateTimeField output (``ccp.clock.iso_utc``) without its per-call time-zone machinery (most
    of order_payload's cost); None stays None."""
    return None if value is None else iso_utc(value)


_READ, _AMOUNTS, _TIMES = _field_reader()
_KEYS = dict.fromkeys(ORDER_FIELDS)
_money = functools.lru_cache(maxsize=8192)(money_str)
_iso_once = functools.lru_cache(maxsize=8192)(_iso)
