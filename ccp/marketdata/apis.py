from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clearing.apis import PageFilterSerializer
from ccp.clock import utcnow
from ccp.contracts.models import Contract, ContractState
from ccp.marketdata.models import Interval
from ccp.marketdata.selectors import candles_list, stats_list
from ccp.marketdata.serializers import CandlePageSerializer, StatsSerializer
from ccp.query import PAGE_PARAMS, page_limit, query_check, query_filters


class ContractCandlesApi(APIView):
    """A contract's candles of one interval (1m, 5m, 1h, 1d), oldest first. With ``since``: the first
    ``limit`` buckets starting at or after it; without: the last ``limit`` (starting before ``until``
    when given). Buckets are aligned in UTC (1h on the hour, 1d at 00:00); a bucket without trades has
    no candle and is left out, not filled in. Next page: ``since`` = the last candle's start + the
    interval. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class CandleFilterSerializer(PageFilterSerializer):
        interval = serializers.ChoiceField(choices=Interval.values, help_text="bucket length")
        since = serializers.DateTimeField(required=False, help_text="buckets starting at or after (ISO 8601)")
        until = serializers.DateTimeField(required=False, help_text="buckets starting before (ISO 8601)")

        def validate(self, data: dict) -> dict:
            if "since" in data and "until" in data and data["since"] >= data["until"]:
                raise ValidationError({"until": ["Must be after since."]})
            return data

    @extend_schema(parameters=[CandleFilterSerializer], responses=CandlePageSerializer)
    def get(self, request, symbol: str):
        filters = query_filters(request, self.CandleFilterSerializer, paginated=False)
        contract = get_object_or_404(Contract, symbol=symbol)
        candles = candles_list(contract_id=contract.pk, interval=filters["interval"], limit=page_limit(request),
                               since=filters.get("since"), until=filters.get("until"))
        return Response(CandlePageSerializer({"contract": contract.symbol, "interval": filters["interval"],
                                              "results": candles}).data)


class ContractStatsApi(APIView):
    """A contract's 24 h statistics: last price, change, high, low, volume and trade count over the
    1,440 minutes ending with the current one, and open interest. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=StatsSerializer)
    def get(self, request, symbol: str):
        query_check(request)
        contract = get_object_or_404(Contract, symbol=symbol)
        return Response(StatsSerializer(stats_list(contracts=[contract], now=utcnow())[0]).data)


class StatsListApi(generics.ListAPIView):
    """The 24 h statistics of every listed contract, by symbol, paginated (``?limit=&offset=``). Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = StatsSerializer

    def get_queryset(self):
        return Contract.objects.filter(state=ContractState.LISTED).order_by("symbol")

    def list(self, request, *args, **kwargs):
        query_check(request, *PAGE_PARAMS)
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(StatsSerializer(stats_list(contracts=page, now=utcnow()), many=True).data)
