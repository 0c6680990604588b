from rest_framework import serializers

from ccp.accounts.models import FundLock
from ccp.serializers import MoneyField


class BalanceSerializer(serializers.ModelSerializer):
    """A client's collateral in one currency; available = fundlock + settle_value - order_value - lockups."""

    currency = serializers.CharField(source="currency.symbol", read_only=True)
    fundlock = MoneyField(read_only=True)
    order_value = MoneyField(read_only=True)
    settle_value = MoneyField(read_only=True)
    lockups = MoneyField(source="lockup_value", read_only=True)
    available = MoneyField(read_only=True)

    class Meta:
        model = FundLock
        fields = ["currency", "fundlock", "settle_value", "order_value", "lockups", "available", "updated_at"]
