from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.contracts.models import Contract
from ccp.errors import ApplicationError, NotFound
from ccp.orders.models import Order, OrderKind, Side
from ccp.orders.results import response_replaced
from ccp.orders.selectors import order_get, order_list
from ccp.orders.serializers import OrderDetailSerializer, OrderSerializer
from ccp.orders.services import OrderRequest, order_cancel, order_submit
from ccp.orders.states import OrderState
from ccp.query import query_check, query_filters
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, TextField
from ccp.throttling import OrderEntryThrottle


class OrderListSubmitApi(generics.ListAPIView):
    """Your orders (GET, newest first) and order entry (POST).

    A new order is stored as 'received' and validated against your collateral by a worker; the
    request waits a short while (CCP_ORDER_WAIT_MS) for it and answers 201 with the order accepted
    or rejected (with its reason), or 202 still 'received' if the validation took longer: follow it
    on the private WebSocket stream or here. Sending the same client_order_id again returns the
    original order (200); with a different body it is refused.
    """

    serializer_class = OrderSerializer
    throttle_classes = [OrderEntryThrottle]

    class OrderFilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=OrderState.values, required=False)
        contract = serializers.CharField(required=False)

    class OrderRequestSerializer(serializers.Serializer):
        client_order_id = PatternField(CLIENT_ID_PATTERN, max_length=64, help_text=CLIENT_ID_HELP)
        contract = TextField(max_length=64, help_text="contract symbol")
        side = serializers.ChoiceField(choices=Side.values)
        kind = serializers.ChoiceField(choices=OrderKind.values, default=OrderKind.LIMIT)
        price = MoneyField(help_text="limit price, a decimal string on the contract's tick grid")
        quantity = MoneyField(help_text="a decimal string, whole lots")

    @extend_schema(parameters=[OrderFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = query_filters(self.request, self.OrderFilterSerializer)
        return order_list(client=self.request.user, state=filters.get("state"), contract_symbol=filters.get("contract"))

    @extend_schema(request=OrderRequestSerializer, responses={
        201: OpenApiResponse(OrderSerializer, description="validated within the wait: accepted or rejected"),
        202: OpenApiResponse(OrderSerializer, description="received: the validation follows"),
        200: OpenApiResponse(OrderSerializer, description="the same order sent again"),
        409: OpenApiResponse(description="client_order_id_reused: the id was used for a different order")})
    def post(self, request):
        data = self.OrderRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        contract = Contract.objects.filter(symbol=fields.pop("contract")).first()
        if contract is None:
            raise ApplicationError("No contract with this symbol.", code="unknown_contract")
        order, created = order_submit(client=request.user, request=OrderRequest(contract=contract, **fields),
                                      now=utcnow())
        response = Response(OrderSerializer(order).data,
                            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
        if created:
            response.awaited_orders = ([order.pk], lambda finished: response_replaced(
                response, OrderSerializer(Order.objects.get(pk=order.pk)).data, status.HTTP_201_CREATED))
        return response


class OrderDetailApi(APIView):
    """One of your orders with its state history."""

    @extend_schema(responses=OrderDetailSerializer)
    def get(self, request, order_id: int):
        query_check(request)
        order = order_get(client=request.user, order_id=order_id)
        if order is None:
            raise NotFound("No such order.", code="order_not_found")
        return Response(OrderDetailSerializer(order).data)


class OrderCancelApi(APIView):
    """Cancel one of your open orders; its order value is released at once."""

    throttle_classes = [OrderEntryThrottle]

    @extend_schema(request=None, responses={200: OrderSerializer,
                                            409: OpenApiResponse(description="the order is no longer open")})
    def post(self, request, order_id: int):
        return Response(OrderSerializer(order_cancel(client=request.user, order_id=order_id, now=utcnow())).data)
