import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from ccp.clock import utcnow
from ccp.money import money_str
from ccp.orders.models import Order
from ccp.orders.results import response_replaced
from ccp.orders.serializers import order_payload
from ccp.perps.accounting import ISOLATED
from ccp.perps.apis import OpenRequestSerializer
from ccp.perps.selectors import isolated_liquidation_price, perpetual_named
from ccp.perps.services import position_open
from ccp.query import PAGE_PARAMS, query_check
from ccp.risk.models import Lockup, Position
from ccp.risk.selectors import positions_marked, positions_of
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, SignedMoneyField


class PositionSerializer(serializers.ModelSerializer):
    contract = serializers.CharField(source="contract.symbol")
    quantity = SignedMoneyField(read_only=True, help_text="signed: positive long, negative short")
    entry_price = MoneyField(read_only=True, allow_null=True,
                             help_text="average price of the open quantity; null when flat")
    mark_price = MoneyField(read_only=True, allow_null=True,
                            help_text="the contract's mark price (GET /contracts); null without a fresh index")
    unrealised_pnl = SignedMoneyField(read_only=True, allow_null=True,
                                      help_text="quantity x (mark - entry); null without a mark price")
    realised_pnl = SignedMoneyField(read_only=True, help_text="PnL of the quantity closed so far")
    margin_mode = serializers.CharField(read_only=True, help_text="a perpetual's: cross or isolated; empty otherwise")
    margin = SignedMoneyField(read_only=True, help_text="a perpetual's: isolated, its collateral (funding included); "
                                                        "cross, its initial margin; 0 otherwise")
    liquidation_price = serializers.SerializerMethodField(
        help_text="an isolated perpetual position's: the first mark that liquidates it; null otherwise (or when "
                  "none does)")

    class Meta:
        model = Position
        fields = ["contract", "quantity", "entry_price", "mark_price", "unrealised_pnl", "realised_pnl", "margin_mode",
                  "margin", "liquidation_price", "updated_at"]

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_liquidation_price(self, position: Position) -> str | None:
        if position.margin_mode != ISOLATED:
            return None
        price = isolated_liquidation_price(perpetual=position.contract.perpetual, quantity=position.quantity,
                                           entry_px=position.cost / position.quantity if position.quantity else None,
                                           margin=position.margin)
        return None if price is None else money_str(price)


def _opened(client, order_id: int) -> dict:
    """An open's answer once its order is done: the order, and the position as it now is."""
    order = Order.objects.select_related("contract").get(pk=order_id)
    position = positions_of(client_id=client.pk).filter(contract_id=order.contract_id).first()
    return {"order": order_payload(order), "position": None if position is None else PositionSerializer(
        positions_marked([position], now=utcnow())[0]).data}


class LockupSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(source="pair.__str__")
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Lockup
        fields = ["underlying", "expiry_date", "currency", "amount", "updated_at"]


class PositionsApi(generics.ListAPIView):
    """Your positions (GET): every open one, and those you closed on contracts not yet settled (their
    realised PnL), with entry price, mark price and PnL. Realised + unrealised PnL = the position's
    cash movements + quantity x the premium at the mark price (a future's premium is its price less
    the floor, prepaid).

    POST opens (or adds to) an isolated position on a perpetual the way the seed's traders do: an
    immediate-or-cancel market order for margin x leverage / mark, protected at mark x (1 +/- slippage);
    it answers 201 with the order and the position once the matcher filled it within the wait
    (``CCP_ORDER_WAIT_MS``), 202 with the order still received otherwise. Refusals: those of
    ``POST /positions/estimate``, 409 ``nothing_fillable`` (nothing on the book within the slippage), and
    the order's own (``insufficient_collateral`` as a rejected order)."""

    serializer_class = PositionSerializer

    class OpenSerializer(OpenRequestSerializer):
        client_order_id = PatternField(CLIENT_ID_PATTERN, max_length=64, required=False, help_text=CLIENT_ID_HELP
                                       + "; default: a new one (the open is then not idempotent)")

    @extend_schema(request=OpenSerializer, responses={
        201: OpenApiResponse(description="{order, position}: filled (or rejected) within the wait"),
        202: OpenApiResponse(description="{order, position: null}: received, the matcher follows"),
        200: OpenApiResponse(description="the same client_order_id sent again")})
    def post(self, request):
        terms = self.OpenSerializer(data=request.data)
        terms.is_valid(raise_exception=True)
        data = terms.validated_data
        perpetual = perpetual_named(data["contract"])
        order, created = position_open(
            client=request.user, perpetual=perpetual, side=data["side"], margin=data["margin"],
            leverage=data["leverage"], slippage_bps=data["slippage_bps"],
            client_order_id=data.get("client_order_id") or f"open-{uuid.uuid4().hex[:24]}", now=utcnow())
        response = Response({"order": order_payload(order), "position": None},
                            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
        if created:
            response.awaited_orders = ([order.pk], lambda finished: response_replaced(
                response, _opened(request.user, order.pk), status.HTTP_201_CREATED))
        return response

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return positions_of(client_id=self.request.user.pk)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else positions_marked(page, now=utcnow())


class LockupsApi(generics.ListAPIView):
    """Collateral locked for each of your (expiry, underlying) portfolios."""

    serializer_class = LockupSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return (Lockup.objects.filter(client=self.request.user)
                .select_related("pair__base", "pair__quote", "currency").order_by("expiry_date", "pair_id"))
