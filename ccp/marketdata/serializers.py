"""Representations of market data: candles and 24 h statistics."""

from rest_framework import serializers

from ccp.marketdata.models import Interval
from ccp.serializers import MoneyField, SignedMoneyField


class CandleSerializer(serializers.Serializer):
    start = serializers.DateTimeField(source="bucket_start", help_text="the bucket's start (UTC, aligned)")
    open = MoneyField(help_text="first trade's price (lowest sequence)")
    high = MoneyField()
    low = MoneyField()
    close = MoneyField(help_text="last trade's price (highest sequence)")
    volume = MoneyField(help_text="contracts traded")
    trade_count = serializers.IntegerField()
    first_sequence = serializers.IntegerField()
    last_sequence = serializers.IntegerField()


class CandlePageSerializer(serializers.Serializer):
    contract = serializers.CharField()
    interval = serializers.ChoiceField(choices=Interval.choices)
    results = CandleSerializer(many=True, help_text="oldest first; buckets without trades left out")


class StatsSerializer(serializers.Serializer):
    contract = serializers.CharField()
    last_price = MoneyField(allow_null=True, help_text="the last trade's price (whenever it was); null: no trade")
    change = SignedMoneyField(allow_null=True, help_text="last price minus the last price before the window (else "
                                                         "the window's first trade's); null: no trade")
    change_percent = SignedMoneyField(allow_null=True, help_text="change over that price, in percent, to 0.01")
    high = MoneyField(allow_null=True, help_text="in the window; null: no trade in it")
    low = MoneyField(allow_null=True, help_text="in the window; null: no trade in it")
    volume = MoneyField(help_text="contracts traded in the window")
    trade_count = serializers.IntegerField()
    open_interest = MoneyField(help_text="sum of the long positions")
    window_start = serializers.DateTimeField(help_text="trades executed at or after this count (a whole minute)")
    window_end = serializers.DateTimeField(help_text="... and before this: the end of the current minute")
