from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clearing.selectors import FillCursor, fills_list, trades_list
from ccp.clearing.serializers import FillPageSerializer, TradePageSerializer
from ccp.contracts.models import Contract
from ccp.query import page_limit, query_filters
from ccp.serializers import PatternField, TextField

MAX_ID = 2**63 - 1
_CURSOR_HELP = "next_cursor of the previous page"


class PageFilterSerializer(serializers.Serializer):
    # Documents ``limit``; page_limit reads it (strict: digits only).
    limit = serializers.IntegerField(min_value=1, max_value=settings.CCP_PAGE_MAX, required=False,
                                     help_text="page size")


class FillsApi(APIView):
    """Your fills: your side of each trade, newest first, with cursor pagination (``?cursor=`` the
    previous page's ``next_cursor``). Filters: ``contract`` (symbol), ``order`` (id), ``since``
    (executed at or after, ISO 8601)."""

    class FillFilterSerializer(PageFilterSerializer):
        contract = TextField(max_length=64, required=False, help_text="contract symbol")
        order = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, help_text="order id")
        since = serializers.DateTimeField(required=False, help_text="executed at or after (ISO 8601)")
        cursor = PatternField(r"^[0-9]{1,18}\.(buy|sell)$", required=False, help_text=_CURSOR_HELP)

    @extend_schema(parameters=[FillFilterSerializer], responses=FillPageSerializer)
    def get(self, request):
        filters = query_filters(request, self.FillFilterSerializer, paginated=False)
        cursor = filters.get("cursor")
        fills, after = fills_list(client_id=request.user.pk, limit=page_limit(request),
                                  contract_symbol=filters.get("contract"), order_id=filters.get("order"),
                                  since=filters.get("since"), after=FillCursor.parse(cursor) if cursor else None)
        return Response(FillPageSerializer({"results": fills, "next_cursor": after and str(after)}).data)


class ContractTradesApi(APIView):
    """A contract's public trades, newest first (highest sequence), with cursor pagination
    (``?cursor=`` the previous page's ``next_cursor``). With ``?after_sequence=N`` instead: oldest first
    from sequence N + 1 (how a trade stream client fills a gap), and ``next_cursor`` is the
    ``after_sequence`` of the next page."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class TradeFilterSerializer(PageFilterSerializer):
        cursor = PatternField(r"^[0-9]{1,18}$", required=False, help_text=_CURSOR_HELP)
        after_sequence = serializers.IntegerField(min_value=0, max_value=MAX_ID, required=False,
                                                  help_text="oldest first, from this sequence + 1 (not with cursor)")

        def validate(self, data: dict) -> dict:
            if "cursor" in data and "after_sequence" in data:
                raise ValidationError({"after_sequence": ["Not with cursor: pass the next after_sequence instead."]})
            return data

    @extend_schema(parameters=[TradeFilterSerializer], responses=TradePageSerializer)
    def get(self, request, symbol: str):
        filters = query_filters(request, self.TradeFilterSerializer, paginated=False)
        contract = get_object_or_404(Contract, symbol=symbol)
        cursor = filters.get("cursor")
        trades, after = trades_list(contract_id=contract.pk, limit=page_limit(request),
                                    before_sequence=int(cursor) if cursor else None,
                                    after_sequence=filters.get("after_sequence"))
        return Response(TradePageSerializer({"contract": contract.symbol, "results": trades,
                                             "next_cursor": None if after is None else str(after)}).data)
