from rest_framework import serializers

from ccp.contracts.models import Contract
from ccp.serializers import MoneyField


class ContractSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(source="pair.__str__", read_only=True)
    collateral = serializers.CharField(source="collateral.symbol", read_only=True)
    strike_px = MoneyField(read_only=True, allow_null=True)
    floor_px = MoneyField(read_only=True)
    cap_px = MoneyField(read_only=True)
    tick_size = MoneyField(read_only=True)
    lot_size = MoneyField(read_only=True)
    price_min = MoneyField(read_only=True, help_text="lowest valid order price")
    price_max = MoneyField(read_only=True, help_text="highest valid order price: what the contract can pay at most")
    expires_at = serializers.DateTimeField(read_only=True)
    trading_ends_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Contract
        fields = ["symbol", "underlying", "collateral", "kind", "strike_px", "expiry_date", "expires_at",
                  "trading_ends_at", "floor_px", "cap_px", "tick_size", "lot_size", "price_min", "price_max", "state"]
