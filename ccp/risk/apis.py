from rest_framework import generics, serializers

from ccp.query import PAGE_PARAMS, query_check
from ccp.risk.models import Lockup, Position
from ccp.serializers import MoneyField, SignedMoneyField


class PositionSerializer(serializers.ModelSerializer):
    contract = serializers.CharField(source="contract.symbol")
    quantity = SignedMoneyField(read_only=True, help_text="signed: positive long, negative short")

    class Meta:
        model = Position
        fields = ["contract", "quantity", "updated_at"]


class LockupSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(source="pair.__str__")
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Lockup
        fields = ["underlying", "expiry_date", "currency", "amount", "updated_at"]


class PositionsApi(generics.ListAPIView):
    """Your open positions (zero positions are left out)."""

    serializer_class = PositionSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return (Position.objects.filter(client=self.request.user).exclude(quantity=0)
                .select_related("contract").order_by("contract__expiry_date", "contract__symbol"))


class LockupsApi(generics.ListAPIView):
    """Collateral locked for each of your (expiry, underlying) portfolios."""

    serializer_class = LockupSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return (Lockup.objects.filter(client=self.request.user)
                .select_related("pair__base", "pair__quote", "currency").order_by("expiry_date", "pair_id"))
