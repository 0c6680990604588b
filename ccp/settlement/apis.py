from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.errors import ApplicationError
from ccp.serializers import MoneyField
from ccp.settlement.models import Withdrawal
from ccp.settlement.services import withdrawal_request


class WithdrawalSerializer(serializers.ModelSerializer):
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Withdrawal
        fields = ["id", "currency", "amount", "state", "created_at", "released_at"]


class WithdrawalsApi(generics.ListAPIView):
    """Your withdrawals (GET) and a new one (POST): up to your available collateral. Once `released`,
    call `withdraw(token, amount)` on the FundLock contract from your wallet."""

    serializer_class = WithdrawalSerializer

    class WithdrawalRequestSerializer(serializers.Serializer):
        currency = serializers.CharField(max_length=12)
        amount = MoneyField()

    def get_queryset(self):
        return Withdrawal.objects.filter(client=self.request.user).select_related("currency")

    @extend_schema(request=WithdrawalRequestSerializer, responses={
        201: WithdrawalSerializer, 409: OpenApiResponse(description="insufficient_collateral")})
    def post(self, request):
        data = self.WithdrawalRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        currency = Currency.objects.filter(symbol=data.validated_data["currency"]).first()
        if currency is None:
            raise ApplicationError("No such currency.", code="unknown_currency")
        withdrawal = withdrawal_request(client=request.user, currency=currency, amount=data.validated_data["amount"],
                                        now=utcnow())
        return Response(WithdrawalSerializer(withdrawal).data, status=status.HTTP_201_CREATED)
