import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.money import money_str
from ccp.orders.apis import orders_reread
from ccp.orders.models import Order, TriggerSource
from ccp.orders.results import response_replaced
from ccp.orders.serializers import OrderSerializer, order_payload
from ccp.perps.accounting import ISOLATED
from ccp.perps.apis import OpenRequestSerializer
from ccp.perps.positions import TPSL_SLIPPAGE_BPS, perp_position_close, position_margin_adjust, position_tpsl_set
from ccp.perps.selectors import (
    MAX_SLIPPAGE_BPS,
    isolated_bankruptcy_price,
    isolated_liquidation_price,
    isolated_margin_ratio,
    perpetual_named,
    positions_tpsl,
)
from ccp.perps.services import position_open
from ccp.query import PAGE_PARAMS, query_check
from ccp.risk.models import Lockup, Position
from ccp.risk.selectors import positions_marked, positions_of
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, SignedMoneyField, TextField
from ccp.throttling import OrderEntryThrottle


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

    bankruptcy_price = serializers.SerializerMethodField(
        help_text="an isolated perpetual position's: the mark at which its equity is zero; null otherwise")
    margin_ratio = serializers.SerializerMethodField(
        help_text="an isolated perpetual position's: (maintenance rate + liquidation fee) x |quantity| x mark / "
                  "equity at the mark; liquidated at 1; null otherwise, without a mark, or with no equity left")
    take_profit_order_id = serializers.SerializerMethodField(
        help_text="a perpetual position's take-profit order (POST /positions/tpsl), while it is open; else null")
    stop_loss_order_id = serializers.SerializerMethodField(
        help_text="a perpetual position's stop-loss order (POST /positions/tpsl), while it is open; else null")

    class Meta:
        model = Position
        fields = ["contract", "quantity", "entry_price", "mark_price", "unrealised_pnl", "realised_pnl", "margin_mode",
                  "margin", "liquidation_price", "bankruptcy_price", "margin_ratio", "take_profit_order_id",
                  "stop_loss_order_id", "updated_at"]

    @staticmethod
    def _isolated(position: Position) -> dict | None:
        if position.margin_mode != ISOLATED or not position.quantity:
            return None
        return {"perpetual": position.contract.perpetual, "quantity": position.quantity,
                "entry_px": position.cost / position.quantity, "margin": position.margin}

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_liquidation_price(self, position: Position) -> str | None:
        terms = self._isolated(position)
        price = None if terms is None else isolated_liquidation_price(**terms)
        return None if price is None else money_str(price)

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_bankruptcy_price(self, position: Position) -> str | None:
        terms = self._isolated(position)
        price = None if terms is None else isolated_bankruptcy_price(**terms)
        return None if price is None else money_str(price)

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_margin_ratio(self, position: Position) -> str | None:
        terms = self._isolated(position)
        ratio = None if terms is None else isolated_margin_ratio(**terms, mark=getattr(position, "mark_price", None))
        return None if ratio is None else money_str(ratio)

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_take_profit_order_id(self, position: Position) -> int | None:
        return getattr(position, "tpsl", {}).get("tp")

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_stop_loss_order_id(self, position: Position) -> int | None:
        return getattr(position, "tpsl", {}).get("sl")


def positions_shown(client_id: int, positions: list[Position]) -> list[Position]:
    """The positions with what ``PositionSerializer`` shows beyond their rows: the mark and unrealised PnL
    (``positions_marked``), a perpetual position's take-profit and stop-loss orders."""
    perpetuals = {p.contract_id for p in positions if p.contract.is_perpetual}
    tpsl = positions_tpsl(client_id=client_id, contract_ids=perpetuals) if perpetuals else {}
    for position in positions:
        position.tpsl = tpsl.get(position.contract_id, {})
    return positions_marked(positions, now=utcnow())


def _opened(client, order_id: int) -> dict:
    """An open's answer once its order is done: the order, and the position as it now is."""
    order = Order.objects.select_related("contract").get(pk=order_id)
    position = positions_of(client_id=client.pk).filter(contract_id=order.contract_id).first()
    return {"order": order_payload(order), "position": None if position is None else PositionSerializer(
        positions_shown(client.pk, [position])[0]).data}


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
        200: OpenApiResponse(description="the same client_order_id sent again"),
        409: OpenApiResponse(description="index_stale, nothing_fillable, client_order_id_reused")})
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
        return None if page is None else positions_shown(self.request.user.pk, page)


class LockupsApi(generics.ListAPIView):
    """Collateral locked for each of your (expiry, underlying) portfolios."""

    serializer_class = LockupSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return (Lockup.objects.filter(client=self.request.user)
                .select_related("pair__base", "pair__quote", "currency").order_by("expiry_date", "pair_id"))


def _order_answer(client, order: Order, created: bool) -> Response:
    """A position order's answer, as POST /positions gives it: 202 ``{order, position: null}`` received (201
    with the position once the matcher took it within the wait), 200 the same client_order_id again."""
    response = Response({"order": order_payload(order), "position": None},
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
    if created:
        response.awaited_orders = ([order.pk], lambda finished: response_replaced(
            response, _opened(client, order.pk), status.HTTP_201_CREATED))
    return response


_ORDER_ANSWERS = {
    201: OpenApiResponse(description="{order, position}: filled (or cancelled, rejected) within the wait"),
    202: OpenApiResponse(description="{order, position: null}: received, the matcher follows"),
    200: OpenApiResponse(description="the same client_order_id sent again"),
    409: OpenApiResponse(description="position_flat, index_stale, nothing_fillable, client_order_id_reused")}


class PerpPositionCloseApi(APIView):
    """Close your position in a perpetual, whole or part: a reduce-only immediate-or-cancel market order on
    the other side for ``quantity`` (default: the whole position), protected at mark x (1 -/+ slippage).
    Answers as POST /positions does. Refusals: 409 ``position_flat``, ``quantity_invalid`` (not whole lots, or
    more than the position: ``extra.max``), 409 ``index_stale``, 409 ``nothing_fillable``, those of a
    contract (``unknown_contract`` 404, ``contract_not_perpetual``), ``client_order_id_reused``."""

    throttle_classes = [OrderEntryThrottle]

    class PositionCloseSerializer(serializers.Serializer):
        contract = TextField(max_length=64, help_text="a perpetual's symbol")
        quantity = MoneyField(required=False, help_text="whole lots, at most the position; default all of it")
        slippage_bps = serializers.IntegerField(min_value=0, max_value=MAX_SLIPPAGE_BPS, default=50,
                                                help_text="worst price: mark x (1 -/+ slippage_bps / 10,000)")
        client_order_id = PatternField(CLIENT_ID_PATTERN, max_length=64, required=False, help_text=CLIENT_ID_HELP
                                       + "; default: a new one (the close is then not idempotent)")

    @extend_schema(request=PositionCloseSerializer, responses=_ORDER_ANSWERS)
    def post(self, request):
        terms = self.PositionCloseSerializer(data=request.data)
        terms.is_valid(raise_exception=True)
        data = terms.validated_data
        order, created = perp_position_close(
            client=request.user, perpetual=perpetual_named(data["contract"]), quantity=data.get("quantity"),
            slippage_bps=data["slippage_bps"],
            client_order_id=data.get("client_order_id") or f"close-{uuid.uuid4().hex[:24]}", now=utcnow())
        return _order_answer(request.user, order, created)


class PositionMarginApi(APIView):
    """Add margin to your isolated position in a perpetual (``amount`` positive: from your available collateral)
    or take some out (negative: back to it). Available collateral moves by exactly ``-amount``; the liquidation
    price moves with the margin. Taking out leaves at least the initial margin of the position at the mark at
    its size tier's highest leverage, less its unrealised loss. Refusals: ``amount_invalid`` (0), 409
    ``position_flat``, ``position_not_isolated``, ``insufficient_collateral`` (``extra.available``),
    ``index_stale`` (taking out), ``margin_remove_too_large`` (``extra.max``)."""

    throttle_classes = [OrderEntryThrottle]

    class PositionMarginSerializer(serializers.Serializer):
        contract = TextField(max_length=64, help_text="a perpetual's symbol")
        amount = SignedMoneyField(help_text="positive adds margin, negative takes it out")

    class PositionMarginAnswerSerializer(serializers.Serializer):
        position = PositionSerializer()
        available = MoneyField(help_text="your available collateral in the perpetual's currency now")

    @extend_schema(request=PositionMarginSerializer, responses={
        200: PositionMarginAnswerSerializer,
        409: OpenApiResponse(description="position_flat, position_not_isolated, insufficient_collateral, index_stale, "
                                         "margin_remove_too_large")})
    def post(self, request):
        terms = self.PositionMarginSerializer(data=request.data)
        terms.is_valid(raise_exception=True)
        data = terms.validated_data
        adjusted = position_margin_adjust(client=request.user, contract=perpetual_named(data["contract"]).contract,
                                          amount=data["amount"], now=utcnow())
        return Response(self.PositionMarginAnswerSerializer({
            "position": positions_shown(request.user.pk, [adjusted.position])[0],
            "available": adjusted.available}).data)


class PositionTpSlApi(APIView):
    """Set the take-profit and stop-loss of your position in a perpetual: each a reduce-only market trigger order
    for the whole position (as it is now) on the other side, firing when ``trigger_source`` reaches its price,
    protected at that price moved ``slippage_bps`` against you (default 500). It replaces the position's earlier
    ones (cancelled, reason ``tpsl_replaced``): send one, both, or neither to cancel both. They end with the
    position (cancelled, reason ``position_closed``, when it is closed or turned). Answers 201 once the
    matcher armed them within the wait, 202 received, 200 when neither was sent. Refusals: 409
    ``position_flat``, 409 ``index_stale``, ``trigger_price_invalid`` (a take-profit not beyond the mark in your
    favour, a stop-loss not beyond it against you: ``extra.field``), ``trigger_invalid`` (off the tick grid or
    outside the price band)."""

    throttle_classes = [OrderEntryThrottle]

    class PositionTpSlSerializer(serializers.Serializer):
        contract = TextField(max_length=64, help_text="a perpetual's symbol")
        take_profit = MoneyField(required=False, help_text="trigger price: above the mark for a long, below "
                                                           "for a short")
        stop_loss = MoneyField(required=False, help_text="trigger price: below the mark for a long, above for a "
                                                         "short")
        trigger_source = serializers.ChoiceField(choices=TriggerSource.choices, default=TriggerSource.MARK)
        slippage_bps = serializers.IntegerField(min_value=0, max_value=MAX_SLIPPAGE_BPS, default=TPSL_SLIPPAGE_BPS,
                                                help_text="worst price: trigger x (1 -/+ slippage_bps / 10,000)")

    class PositionTpSlAnswerSerializer(serializers.Serializer):
        take_profit = OrderSerializer(allow_null=True)
        stop_loss = OrderSerializer(allow_null=True)
        cancelled = serializers.ListField(child=serializers.IntegerField(),
                                          help_text="the ids of the earlier take-profit and stop-loss cancelled")

    @extend_schema(request=PositionTpSlSerializer, responses={
        201: OpenApiResponse(PositionTpSlAnswerSerializer, description="armed within the wait"),
        202: OpenApiResponse(PositionTpSlAnswerSerializer, description="received: the matcher arms them"),
        200: OpenApiResponse(PositionTpSlAnswerSerializer, description="neither sent: both cancelled"),
        409: OpenApiResponse(description="position_flat, index_stale")})
    def post(self, request):
        terms = self.PositionTpSlSerializer(data=request.data)
        terms.is_valid(raise_exception=True)
        data = terms.validated_data
        done = position_tpsl_set(client=request.user, perpetual=perpetual_named(data["contract"]),
                                 take_profit=data.get("take_profit"), stop_loss=data.get("stop_loss"),
                                 trigger_source=data["trigger_source"], slippage_bps=data["slippage_bps"], now=utcnow())
        orders = [order for order in (done.take_profit, done.stop_loss) if order is not None]
        cancelled = [order.pk for order in done.cancelled]

        def answer(placed: list[Order]) -> dict:
            by_id = {order.pk: order for order in placed}
            return {"take_profit": done.take_profit and order_payload(by_id[done.take_profit.pk]),
                    "stop_loss": done.stop_loss and order_payload(by_id[done.stop_loss.pk]), "cancelled": cancelled}

        response = Response(answer(orders), status=status.HTTP_202_ACCEPTED if orders else status.HTTP_200_OK)
        if orders:
            response.awaited_orders = ([order.pk for order in orders], lambda finished: response_replaced(
                response, answer(orders_reread(orders)), status.HTTP_201_CREATED))
        return response
