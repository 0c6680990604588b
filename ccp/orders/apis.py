import functools
import re
from collections.abc import Callable

from django.core.validators import RegexValidator
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.fields import empty
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.book.services import MODIFY_REASONS, MODIFY_REFUSED, order_modify, position_close
from ccp.clock import utcnow
from ccp.contracts.models import Contract
from ccp.db import Columns
from ccp.errors import ApplicationError, Conflict, NotFound, api_exception_handler
from ccp.money import money_str
from ccp.orders.models import Order, OrderKind, SelfTrade, Side, TimeInForce, Trigger, TriggerSource
from ccp.orders.results import response_replaced
from ccp.orders.selectors import order_get, order_list
from ccp.orders.serializers import OrderDetailSerializer, OrderSerializer, order_payload
from ccp.orders.services import (
    OrderRequest,
    contract_fingerprint_sql,
    order_cancel,
    order_submit,
    order_submit_seen,
    orders_cancel_all,
    orders_submit,
)
from ccp.orders.states import OPEN_STATES, OrderState
from ccp.perps.models import Perpetual
from ccp.query import query_check, query_filters
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, TextField, parse_number
from ccp.throttling import OrderEntryThrottle, order_entries_allowed


class LegSerializer(serializers.Serializer):
    """A take-profit or stop-loss attached to an entry: a reduce-only order on the other side, for what the
    entry has filled, that enters the book when its trigger fires (one firing cancels the other)."""

    trigger_price = MoneyField()
    price = MoneyField(help_text="the limit price, or a market leg's protection price")
    kind = serializers.ChoiceField(choices=OrderKind.choices, default=OrderKind.MARKET)
    trigger_source = serializers.ChoiceField(choices=TriggerSource.choices, default=TriggerSource.MARK)


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
        side = serializers.ChoiceField(choices=Side.choices)
        kind = serializers.ChoiceField(choices=OrderKind.choices, default=OrderKind.LIMIT,
                                       help_text="market orders: continuous contracts only")
        price = MoneyField(help_text="limit price (a market order's protection price: the worst it may trade "
                                     "at), a decimal string on the contract's tick grid")
        quantity = MoneyField(help_text="a decimal string, whole lots")
        time_in_force = serializers.ChoiceField(
            choices=TimeInForce.choices, required=False,
            help_text="gtc (a limit order's default), ioc (a market order's default), fok, post_only; "
                      "auctions take gtc only")
        reduce_only = serializers.BooleanField(default=False, help_text="continuous contracts only")
        self_trade_prevention = serializers.ChoiceField(
            choices=SelfTrade.choices, default=SelfTrade.CANCEL_INCOMING,
            help_text="when it meets a resting order of yours (continuous contracts)")
        trigger = serializers.ChoiceField(choices=Trigger.choices, required=False,
                                          help_text="a stop or take-profit order (continuous contracts): armed "
                                                    "until trigger_source reaches trigger_price")
        trigger_price = MoneyField(required=False)
        trigger_source = serializers.ChoiceField(choices=TriggerSource.choices, required=False,
                                                 help_text="mark (default), index or last")
        take_profit = LegSerializer(required=False, help_text="continuous contracts: armed as the order fills")
        leverage = MoneyField(required=False, help_text="perpetuals only (required there): 1 up to the highest "
                                                        "leverage of the size's maintenance tier")
        margin_mode = serializers.ChoiceField(choices=["cross", "isolated"], required=False,
                                              help_text="perpetuals only: the margin mode of the position it "
                                                        "opens (default cross)")
        stop_loss = LegSerializer(required=False, help_text="continuous contracts: armed as the order fills")

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
        payloads: dict[int, dict] = {}
        order, created = order_enter(client=request.user, data=request.data, now=utcnow(), payloads=payloads)
        return _entered(order, created, payloads.get(order.pk))


def _entered(order: Order, created: bool, payload: dict | None = None) -> Response:
    """An entered order's answer: 202 received (201 once its result came within the wait), 200 sent before.
    ``payload``: the order's representation, when the caller has it already."""
    response = Response(payload or order_payload(order),
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
    if created:
        response.awaited_orders = ([order.pk], lambda finished: response_replaced(
            response, order_payload(orders_reread([order])[0]), status.HTTP_201_CREATED))
        response.awaited_render = lambda payloads: (payloads[order.pk], status.HTTP_201_CREATED)
    return response


def orders_reread(orders: list[Order]) -> list[Order]:
    """The orders as they are now, each with the contract it was entered with (a contract row is not read
    again: the answer names only its symbol)."""
    contracts = {order.pk: order.contract for order in orders}
    columns = Columns.of(Order)
    with connection.cursor() as cursor:  # plain SQL: compiling the queryset cost more than the query
        cursor.execute(f"SELECT {columns.select('o')} FROM {Order._meta.db_table} AS o WHERE o.id = ANY(%s) "
                       "ORDER BY o.id", [sorted(contracts)])
        now = [columns.instance(row) for row in cursor.fetchall()]
    for order in now:
        order.contract = contracts[order.pk]
    return now


def order_enter(*, client, data, now, payloads: dict[int, dict] | None = None) -> tuple[Order, bool]:
    """One order's entry from its request fields: parsed, then submitted against its contract as this process
    last read it, when it did (``order_submit_seen``: the contract is read again only if it changed, the open
    orders counted in the insert's statement), else its contract found (with the client's open orders counted
    in the same statement) and submitted (``payloads``: as ``orders_submit``)."""
    fields = order_fields(data)
    symbol = fields.pop("contract")
    seen = _contracts_seen.get(symbol)
    if seen is not None:
        entered = order_submit_seen(client=client, request=order_request(_contract_instance(seen[0]), dict(fields)),
                                    contract_fingerprint=seen[1], now=now, payloads=payloads)
        if entered is not None:
            return entered
    contracts, open_count = entry_reads(symbols=[symbol], client_id=client.pk)
    contract = contracts.get(symbol)
    if contract is None:
        raise _unknown_contract()
    return order_submit(client=client, request=order_request(contract, fields), now=now, open_count=open_count,
                        payloads=payloads)


_PERPETUAL = Contract._meta.get_field("perpetual")  # the reverse one-to-one: a contract's perpetual terms
_ENTRY_READS = """
    SELECT (SELECT count(*) FROM {orders} WHERE client_id = %s AND state IN ({open_states})), {contract}, {perpetual},
    {fingerprint}
    FROM (SELECT) AS one LEFT JOIN {contracts} AS c ON c.symbol {symbols}
    LEFT JOIN {perpetuals} AS p ON p.contract_id = c.id
"""
# The contracts order entry read last in this process, by symbol: (their row and their perpetual terms', the
# fingerprint of both then), for ``order_submit_seen``; rows, not instances: each request builds its own.
_contracts_seen: dict[str, tuple[tuple, str]] = {}
_CONTRACTS_SEEN_MAX = 10_000  # emptied when full


@functools.cache
def _entry_reads_sql(one_symbol: bool) -> str:
    """``_ENTRY_READS`` for one symbol (``= %s``) or several (``= ANY(%s)``), the open states written in: constants
    as literals, the symbols as a plain parameter where one is named (psycopg adapts a list element by element)."""
    assert all(state.isidentifier() for state in OPEN_STATES)
    return _ENTRY_READS.format(orders=Order._meta.db_table, contracts=Contract._meta.db_table,
                               perpetuals=Perpetual._meta.db_table, contract=Columns.of(Contract).select("c"),
                               perpetual=Columns.of(Perpetual).select("p"),
                               fingerprint=contract_fingerprint_sql("c", "p"),
                               open_states=", ".join(f"'{state}'" for state in sorted(OPEN_STATES)),
                               symbols="= %s" if one_symbol else "= ANY(%s)")


def entry_reads(*, symbols: list[str], client_id: int) -> tuple[dict[str, Contract], int]:
    """Order entry's reads in one plain statement: the contracts with these symbols, each with its perpetual
    terms (None on a dated contract), and the client's open orders counted (``open_orders_count``, which
    ``orders_submit`` caps). A queryset per read cost a single order more than the queries themselves. The
    contracts found are kept as this process's last read of them (``order_enter``)."""
    wanted = sorted(set(symbols))
    with connection.cursor() as cursor:
        cursor.execute(_entry_reads_sql(len(wanted) == 1), [client_id, wanted[0] if len(wanted) == 1 else wanted])
        rows = cursor.fetchall()
    found = {}
    for row in rows:
        if row[1] is None:  # no contract has these symbols: the count alone
            continue
        named = _contract_instance(row[1:-1])
        if len(_contracts_seen) >= _CONTRACTS_SEEN_MAX:
            _contracts_seen.clear()
        _contracts_seen[named.symbol] = (row[1:-1], row[-1])
        found[named.symbol] = named
    for symbol in wanted:
        if symbol not in found:
            _contracts_seen.pop(symbol, None)
    return found, rows[0][0]


def _contract_instance(row: tuple) -> Contract:
    """A contract and its perpetual terms (None on a dated contract) from their columns as ``entry_reads`` reads
    them."""
    contract, perpetual = Columns.of(Contract), Columns.of(Perpetual)
    at = len(contract.attnames)
    named = contract.instance(row[:at])
    terms = None if row[at] is None else perpetual.instance(row[at:])
    _PERPETUAL.set_cached_value(named, terms)
    if terms is not None:
        _PERPETUAL.remote_field.set_cached_value(terms, named)
    return named


def order_request(contract: Contract, fields: dict) -> OrderRequest:
    """The request for ``contract`` from an order's parsed fields: on a perpetual, margin mode cross unless
    given."""
    if contract.is_perpetual:
        fields.setdefault("margin_mode", "cross")
    return OrderRequest(contract=contract, **fields)


@functools.cache
def order_parser() -> serializers.Serializer:
    """One OrderRequestSerializer per process for every order request: building one copies its fields (a
    tenth of a single order's parsing); ``run_validation`` keeps no state on it, so threads share it."""
    return OrderListSubmitApi.OrderRequestSerializer()


_NOT_PLAIN = object()
# Printable ASCII without spaces: text that DRF's trimming and its blank, NUL and surrogate checks pass as it is.
_PLAIN_TEXT = re.compile(r"[!-~]+")


def _plain_money(value):
    if type(value) is not str:
        return _NOT_PLAIN
    try:
        return parse_number(value)
    except ValueError:
        return _NOT_PLAIN


def _plain_reader(field: serializers.Field) -> Callable | None:
    """How ``field`` reads a plain value (a string or a bool of the kind it expects), exactly as it would:
    value -> what the field gives, or _NOT_PLAIN for anything else; None for a field read by the serializer
    only (the nested legs)."""
    if type(field) is serializers.ChoiceField:
        choices = field.choice_strings_to_values
        return lambda value: choices.get(value, _NOT_PLAIN) if type(value) is str else _NOT_PLAIN
    if type(field) is MoneyField:
        return _plain_money
    if type(field) is serializers.BooleanField:
        return lambda value: value if value is True or value is False else _NOT_PLAIN
    if type(field) in (TextField, PatternField):
        patterns = [v.regex for v in field.validators if isinstance(v, RegexValidator)]
        longest = field.max_length

        def text(value):
            ok = (type(value) is str and len(value) <= longest and _PLAIN_TEXT.fullmatch(value)
                  and all(pattern.search(value) for pattern in patterns))
            return value if ok else _NOT_PLAIN

        return text
    return None


@functools.cache
def _plain_forms() -> tuple[tuple[str, Callable | None, bool, object], ...]:
    """Per field of the order request serializer, in its order: (name, its plain reader, required, default)."""
    parser = order_parser()
    assert type(parser).validate is serializers.Serializer.validate and not parser.validators, \
        "the plain path skips the serializer's own validation: it must have none"
    forms = []
    for name, field in parser.fields.items():
        assert not field.read_only and (field.default is empty or not callable(field.default)), name
        forms.append((name, _plain_reader(field), field.required, field.default))
    return tuple(forms)


def _plain_fields(data) -> dict | None:
    """The fields ``OrderRequestSerializer`` parses from an order request in its plainest form (an object
    whose fields are all strings of the right grammar, or booleans, without legs), read directly at a tenth
    of the serializer's cost (a batch of 100 spent a quarter of its time in it); None for any other request,
    which the serializer parses (and refuses if it must): tests/orders/test_plain_parse.py checks both give
    the same fields."""
    if type(data) is not dict:
        return None
    fields = {}
    for name, read, required, default in _plain_forms():
        value = data.get(name, _NOT_PLAIN)
        if value is _NOT_PLAIN:
            if required:
                return None
            if default is not empty:
                fields[name] = default
            continue
        if read is None or (value := read(value)) is _NOT_PLAIN:
            return None
        fields[name] = value
    return fields


def order_fields(data) -> dict:
    """An order request's fields, parsed, with the defaults that depend on other fields; ``contract`` is
    its symbol."""
    fields = _plain_fields(data)
    if fields is None:
        fields = dict(order_parser().run_validation(data))
    fields.setdefault("time_in_force", TimeInForce.IOC if fields["kind"] == OrderKind.MARKET else TimeInForce.GTC)
    if "trigger" in fields or "trigger_price" in fields:
        fields.setdefault("trigger_source", TriggerSource.MARK)
    legs = {leg: fields.pop(name) for leg, name in (("tp", "take_profit"), ("sl", "stop_loss")) if name in fields}
    if legs:
        fields["attached"] = {leg: {**spec, "trigger_price": money_str(spec["trigger_price"]),
                                    "price": money_str(spec["price"])} for leg, spec in legs.items()}
    return fields


def contract_named(symbol: str) -> Contract:
    """The contract an order request names; 400 ``unknown_contract`` when none has that symbol."""
    contract = Contract.objects.filter(symbol=symbol).select_related("perpetual").first()
    if contract is None:
        raise _unknown_contract()
    return contract


def _unknown_contract() -> ApplicationError:
    return ApplicationError("No contract with this symbol.", code="unknown_contract")


BATCH_MAX_ORDERS = 100


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    extra = serializers.DictField()


class OrderBatchApi(APIView):
    """Order entry for up to 100 orders at once, each with its own result, in the order sent.

    Each order is entered as by POST /orders: its own client_order_id (idempotency key), its own
    checks; an order's refusal does not refuse the others. Each result has the HTTP status the order
    alone would get (201 validated within the wait, 202 received, 200 sent before, 4xx refused) and the
    order, or the error in the one error shape. The order entry throttle counts each order: those past
    the rate are refused with 429 throttled. The request as a whole is refused only for its shape: not
    an object with "orders", a list of 1 to 100 objects (more: batch_too_large).
    """

    throttle_classes: list = []  # counted per order below

    class BatchRequestSerializer(serializers.Serializer):
        orders = serializers.ListField(
            child=serializers.DictField(), min_length=1, max_length=BATCH_MAX_ORDERS,
            help_text="1 to 100 orders, each with the fields of POST /orders (client_order_id, contract, side, "
                      "kind, price, quantity)")

    class BatchResultSerializer(serializers.Serializer):
        status = serializers.IntegerField(help_text="what POST /orders would answer for this order alone")
        order = OrderSerializer(required=False, help_text="the order (statuses 200, 201, 202)")
        error = ErrorSerializer(required=False, help_text="why it was refused (4xx, 5xx)")

    @extend_schema(request=BatchRequestSerializer, responses={
        200: inline_serializer("OrderBatchResults", {"results": BatchResultSerializer(many=True)}),
        400: OpenApiResponse(description="not a batch: invalid_input, or batch_too_large (more than 100)")})
    def post(self, request):
        orders = request.data.get("orders") if isinstance(request.data, dict) else None
        if isinstance(orders, list) and len(orders) > BATCH_MAX_ORDERS:
            raise ApplicationError(f"A batch holds at most {BATCH_MAX_ORDERS} orders.", code="batch_too_large",
                                   extra={"max_orders": BATCH_MAX_ORDERS})
        if not (isinstance(orders, list) and orders and all(type(data) is dict for data in orders)):
            # what the serializer checks (1 to 100 objects: more were refused above), asked of it only to refuse
            self.BatchRequestSerializer(data=request.data).is_valid(raise_exception=True)
        now = utcnow()
        allowed, wait_s = order_entries_allowed(request.user.pk, len(orders))
        results: list[dict | None] = [None] * len(orders)
        parsed: list[tuple[int, dict]] = []
        for position, data in enumerate(orders):
            try:
                if position >= allowed:
                    raise exceptions.Throttled(wait_s)
                parsed.append((position, order_fields(data)))
            except (ApplicationError, exceptions.APIException) as exc:
                results[position] = _refused(exc)
        contracts, open_count = entry_reads(symbols=[f["contract"] for _, f in parsed], client_id=request.user.pk)
        entering: list[tuple[int, OrderRequest]] = []
        for position, fields in parsed:
            contract = contracts.get(fields.pop("contract"))
            if contract is None:
                results[position] = _refused(_unknown_contract())
            else:
                entering.append((position, order_request(contract, fields)))
        received: list[Order] = []
        payloads: dict[int, dict] = {}  # the created orders' representations, as their stream events carry them
        entered = orders_submit(client=request.user, requests=[r for _, r in entering], now=now,
                                open_count=open_count, payloads=payloads)
        for (position, _), outcome in zip(entering, entered, strict=True):
            if isinstance(outcome, ApplicationError):
                results[position] = _refused(outcome)
                continue
            order, created = outcome
            results[position] = {"status": status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
                                 "order": payloads.get(order.pk) or order_payload(order)}
            if created:
                received.append(order)
        response = Response({"results": results})

        def rerender(finished: set[int]) -> Response:
            validated = {o.pk: o for o in orders_reread([o for o in received if o.pk in finished])}
            for result in results:
                if (order := validated.get(result.get("order", {}).get("id"))) and result["status"] == 202:
                    result.update(status=status.HTTP_201_CREATED, order=order_payload(order))
            return response_replaced(response, {"results": results}, status.HTTP_200_OK)

        def rendered(payloads: dict[int, dict]) -> tuple[dict, int]:  # the orders as the signals carried them
            return {"results": [{"status": status.HTTP_201_CREATED, "order": payloads[result["order"]["id"]]}
                                if result["status"] == 202 and result["order"]["id"] in payloads else result
                                for result in results]}, status.HTTP_200_OK

        response.awaited_orders = ([order.pk for order in received], rerender)
        response.awaited_render = rendered
        return response


def _refused(exc: Exception) -> dict:
    """A batch result for an order refused with ``exc``: the status and error body it alone would get."""
    refused = api_exception_handler(exc, {})
    return {"status": refused.status_code, "error": refused.data}


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


class OrderModifyApi(APIView):
    """Modify one of your resting orders on a continuous contract: a new price, a new total size (what has
    filled included), or both.

    A smaller size at the same price keeps the order's time priority and is done at once (200; at or below
    what has filled, the rest is cancelled). A new price or a larger size loses it: the order re-enters the
    book through the contract's matcher in arrival order and may trade at once. The request waits for that
    as order entry does: 200 with the order modified, 409 with the matcher's reason (post_only_would_take,
    insufficient_collateral) and the order unchanged, or 202 if the matcher has not answered within the
    wait (follow the order on the private stream). Auction contracts: modify_not_in_auction.
    """

    throttle_classes = [OrderEntryThrottle]

    class ModifySerializer(serializers.Serializer):
        price = MoneyField(required=False, help_text="the new limit price")
        quantity = MoneyField(required=False, help_text="the new total size, what has filled included")

        def validate(self, data):
            if not data:
                raise serializers.ValidationError("Give a price, a quantity or both.")
            return data

    @extend_schema(request=ModifySerializer, responses={
        200: OrderSerializer, 202: OpenApiResponse(OrderSerializer, description="queued for the matcher"),
        409: OpenApiResponse(description="order_not_open, modify_not_in_auction, or the matcher's refusal")})
    def post(self, request, order_id: int):
        serializer = self.ModifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        order, queued = order_modify(client=request.user, order_id=order_id, price=fields.get("price"),
                                     quantity=fields.get("quantity"), now=utcnow())
        response = Response(order_payload(order), status=status.HTTP_202_ACCEPTED if queued else status.HTTP_200_OK)
        if queued:
            response.awaited_orders = ([order.pk], lambda finished: _modify_result(response, order.pk))
        return response


def _modify_result(response: Response, order_id: int) -> Response:
    order = Order.objects.select_related("contract").get(pk=order_id)
    if order.modify_requested_at is not None:
        return response
    if order.modify_reject_reason:
        refused = api_exception_handler(Conflict(MODIFY_REASONS.get(order.modify_reject_reason, MODIFY_REFUSED),
                                                 code=order.modify_reject_reason), {})
        return response_replaced(response, refused.data, refused.status_code)
    return response_replaced(response, order_payload(order), status.HTTP_200_OK)


class OrderCancelAllApi(APIView):
    """Cancel your open orders: all of them, or of one contract, or of one side. Answers the orders
    cancelled (an order a running auction holds is marked to be cancelled when it is applied)."""

    throttle_classes = [OrderEntryThrottle]

    class CancelAllSerializer(serializers.Serializer):
        contract = TextField(max_length=64, required=False, help_text="only this contract's orders")
        side = serializers.ChoiceField(choices=Side.choices, required=False, help_text="only this side")

    @extend_schema(request=CancelAllSerializer,
                   responses=inline_serializer("CancelledOrders", {"orders": OrderSerializer(many=True)}))
    def post(self, request):
        serializer = self.CancelAllSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        contract = None
        if "contract" in fields:
            contract = contract_named(fields["contract"])
        orders = orders_cancel_all(client=request.user, contract=contract, side=fields.get("side"), now=utcnow())
        return Response({"orders": [order_payload(order) for order in orders]})


class PositionCloseApi(APIView):
    """Close your whole position in a continuous contract: a reduce-only market order (immediate or
    cancel) for the position's size, on the opposite side, that trades no worse than ``price`` (its
    protection price). Answers as order entry does (201 when matched within the wait, 202 received,
    200 the same client_order_id again). No position: no_position (409)."""

    throttle_classes = [OrderEntryThrottle]

    class CloseSerializer(serializers.Serializer):
        client_order_id = PatternField(CLIENT_ID_PATTERN, max_length=64, help_text=CLIENT_ID_HELP)
        contract = TextField(max_length=64, help_text="contract symbol")
        price = MoneyField(help_text="protection price: the worst price the closing order may trade at")

    @extend_schema(request=CloseSerializer, responses={
        201: OrderSerializer, 202: OrderSerializer, 200: OrderSerializer,
        409: OpenApiResponse(description="no_position, client_order_id_reused")})
    def post(self, request):
        serializer = self.CloseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        contract = contract_named(fields["contract"])
        order, created = position_close(client=request.user, contract=contract, price=fields["price"],
                                        client_order_id=fields["client_order_id"], now=utcnow())
        return _entered(order, created)
