"""Representations of the trade ledger: fills (a client's side of a trade) and public trades."""

from rest_framework import serializers

from ccp.clearing.models import Trade, Venue
from ccp.orders.models import Side
from ccp.serializers import MoneyField

NEXT_HELP = "pass as ?cursor= for the next page; null on the last"


class FillSerializer(serializers.Serializer):
    trade_id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    contract = serializers.CharField(source="contract_symbol")
    side = serializers.ChoiceField(choices=Side.choices)
    price = MoneyField()
    quantity = MoneyField()
    executed_at = serializers.DateTimeField()
    venue = serializers.ChoiceField(choices=Venue.choices)
    venue_ref = serializers.CharField(help_text="the venue's event, e.g. auction-42")


class FillPageSerializer(serializers.Serializer):
    results = FillSerializer(many=True, help_text="newest first")
    next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_HELP)


class TradeSerializer(serializers.ModelSerializer):
    price = MoneyField()
    quantity = MoneyField()

    class Meta:
        model = Trade
        fields = ["id", "sequence", "price", "quantity", "aggressor_side", "executed_at", "venue", "venue_ref"]


class TradePageSerializer(serializers.Serializer):
    contract = serializers.CharField()
    results = TradeSerializer(many=True, help_text="newest first (highest sequence); oldest first with after_sequence")
    next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_HELP + " (with after_sequence: the next "
                                                                               "after_sequence)")
