from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.errors import ApplicationError
from ccp.query import PAGE_PARAMS, query_check
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, TextField
from ccp.settlement.models import Withdrawal
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from ccp.throttling import WithdrawalThrottle


class WithdrawalSerializer(serializers.ModelSerializer):
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Withdrawal
        fields = ["id", "client_withdrawal_id", "currency", "amount", "state", "created_at", "released_at"]


class WithdrawalsApi(generics.ListAPIView):
    """Your withdrawals (GET) and a new one (POST): up to your available collateral. Once `released`,
    call `withdraw(token, amount)` on the FundLock contract from your wallet."""

    serializer_class = WithdrawalSerializer

    throttle_classes = [WithdrawalThrottle]

    class WithdrawalRequestSerializer(serializers.Serializer):
        client_withdrawal_id = PatternField(CLIENT_ID_PATTERN, max_length=64, help_text=CLIENT_ID_HELP)
        currency = TextField(max_length=12)
        amount = MoneyField()

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return Withdrawal.objects.filter(client=self.request.user).select_related("currency")

    @extend_schema(request=WithdrawalRequestSerializer, responses={
        201: WithdrawalSerializer,
        200: OpenApiResponse(WithdrawalSerializer, description="the same withdrawal sent again"),
        409: OpenApiResponse(description="insufficient_collateral, or client_withdrawal_id_reused: the id was used "
                                         "for a different withdrawal")})
    def post(self, request):
        data = self.WithdrawalRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        currency = Currency.objects.filter(symbol=fields.pop("currency")).first()
        if currency is None:
            raise ApplicationError("No such currency.", code="unknown_currency")
        withdrawal, created = withdrawal_request(client=request.user, ask=WithdrawalAsk(currency=currency, **fields),
                                                 now=utcnow())
        return Response(WithdrawalSerializer(withdrawal).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
