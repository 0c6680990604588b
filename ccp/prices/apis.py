from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.prices.selectors import index_prices
from ccp.query import query_check
from ccp.serializers import MoneyField


class VenuePriceSerializer(serializers.Serializer):
    venue = serializers.CharField(source="source")
    price = MoneyField()
    observed_at = serializers.DateTimeField()


class IndexPriceSerializer(serializers.Serializer):
    underlying = serializers.CharField(source="pair.__str__", help_text="the pair, e.g. BTC/USDC")
    price = MoneyField(allow_null=True, help_text="the median of the venues' fresh prices; null: no fresh price")
    venues = VenuePriceSerializer(many=True, help_text="each venue's newest fresh price the index is made of")


class IndexApi(APIView):
    """The index price of each underlying: the median of the spot venues' prices observed within
    CCP_SPOT_STALE_AFTER_SECONDS, with the venues it is made of. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=IndexPriceSerializer(many=True))
    def get(self, request):
        query_check(request)
        return Response(IndexPriceSerializer(index_prices(now=utcnow()), many=True).data)
