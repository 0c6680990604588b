from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.contracts.models import Contract, ContractState
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.selectors import contract_list
from ccp.contracts.serializers import ContractSerializer
from ccp.orders.selectors import book_levels
from ccp.orders.serializers import BookSerializer
from ccp.prices.selectors import index_by_pair
from ccp.query import query_check, query_filters


class ContractListApi(generics.ListAPIView):
    """Listed and past contracts, filtered by underlying, expiry, kind and state. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = ContractSerializer

    class ContractFilterSerializer(serializers.Serializer):
        underlying = serializers.CharField(required=False, help_text="BTC/USDC, BTC-USDC or BTC")
        expiry = serializers.DateField(required=False)
        kind = serializers.ChoiceField(choices=[k.value for k in ContractKind], required=False)
        state = serializers.ChoiceField(choices=ContractState.values, required=False)

    @extend_schema(parameters=[ContractFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI generator: no request, no query
            return context
        return {**context, "indices": index_by_pair(now=utcnow())}

    def get_queryset(self):
        data = query_filters(self.request, self.ContractFilterSerializer)
        return contract_list(underlying=data.get("underlying"), expiry_date=data.get("expiry"),
                             kind=data.get("kind"), state=data.get("state"))


class ContractDetailApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=ContractSerializer)
    def get(self, request, symbol: str):
        query_check(request)
        contract = get_object_or_404(contract_list(), symbol=symbol)
        return Response(ContractSerializer(contract, context={"indices": index_by_pair(now=utcnow())}).data)


class BookApi(APIView):
    """The public book of a contract: open quantity per price level. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=BookSerializer)
    def get(self, request, symbol: str):
        query_check(request)
        contract = get_object_or_404(Contract, symbol=symbol)
        return Response(BookSerializer({"contract": contract.symbol, **book_levels(contract_id=contract.pk)}).data)
