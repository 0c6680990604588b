from dataclasses import asdict

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.perps.margin import LONG, SHORT
from ccp.perps.selectors import MAX_SLIPPAGE_BPS, open_estimate, perpetual_named
from ccp.serializers import MoneyField, TextField


class OpenRequestSerializer(serializers.Serializer):
    """Opening a position the way the seed's traders do: a margin, a leverage and a slippage guard."""

    contract = TextField(max_length=64, help_text="a perpetual's symbol, e.g. BTC-USDC-PERP")
    side = serializers.ChoiceField(choices=[LONG, SHORT])
    margin = MoneyField(help_text="collateral to put behind the position")
    leverage = MoneyField(help_text="1 up to the contract's highest for the size (GET /contracts: perpetual.tiers)")
    slippage_bps = serializers.IntegerField(min_value=0, max_value=MAX_SLIPPAGE_BPS, default=50,
                                            help_text="worst price: mark x (1 +/- slippage_bps / 10,000)")


class OpenEstimateSerializer(serializers.Serializer):
    side = serializers.CharField()
    leverage = MoneyField()
    mark_price = MoneyField()
    protection_price = MoneyField()
    quantity = MoneyField(help_text="margin x leverage / mark, down to the lot")
    filled_quantity = MoneyField(help_text="what the book holds within the protection price now")
    entry_price = MoneyField(allow_null=True, help_text="average fill price; null when nothing fills")
    margin = MoneyField(help_text="initial margin of the filled quantity")
    maintenance_rate = MoneyField()
    liquidation_price = MoneyField(allow_null=True, help_text="the first mark that liquidates the position "
                                                              "(isolated); null: none does, or nothing fills")
    bankruptcy_price = MoneyField(allow_null=True)


class PositionEstimateApi(APIView):
    """Before opening an isolated position on a perpetual: what ``margin`` at ``leverage`` buys or sells
    against the book as it is now (an immediate-or-cancel order protected at mark x (1 +/- slippage)), at
    what average entry, and where it would be liquidated. Changes nothing. Refusals: ``unknown_contract``
    (404), ``contract_not_perpetual``, ``margin_invalid``, ``leverage_invalid`` (``extra.max``),
    ``margin_too_small``, ``index_stale`` (409: no fresh index, nothing opens)."""

    @extend_schema(request=OpenRequestSerializer, responses={
        200: OpenEstimateSerializer, 409: OpenApiResponse(description="index_stale: no fresh index, nothing opens")})
    def post(self, request):
        terms = OpenRequestSerializer(data=request.data)
        terms.is_valid(raise_exception=True)
        data = terms.validated_data
        estimate = open_estimate(perpetual=perpetual_named(data["contract"]), side=data["side"], margin=data["margin"],
                                 leverage=data["leverage"], slippage_bps=data["slippage_bps"], now=utcnow())
        return Response(OpenEstimateSerializer(asdict(estimate)).data)
