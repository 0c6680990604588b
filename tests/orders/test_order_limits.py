"""Abuse limits on orders: every order holds collateral (its price at least a tick inside what the
contract can be worth), no order's amounts exceed what storage holds, and a client's open orders are
capped (CCP_MAX_OPEN_ORDERS)."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from django.db import connections
from rest_framework.test import APIClient

from ccp.errors import ApplicationError
from ccp.orders.models import Order
from ccp.orders.rules import order_rule_violation
from ccp.orders.services import OrderRequest, order_cancel, order_submit, order_validate
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory


def request(contract, *, price="100", quantity="1", side="buy", client_order_id="c-1") -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, contract=contract, side=side, kind="limit", price=D(price),
                        quantity=D(quantity))


def validated(client, contract, *, price="100", quantity="1", side="buy", now) -> Order:
    order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D(quantity))
    order_validate(order_id=order.pk, now=now)
    order.refresh_from_db()
    return order


# A call struck at 100000 on [50000, 150000] pays at most 50000; a future on it is priced in [50000, 150000].
@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "side", "price", "accepted"), [
    ("call", "buy", "0", False),  # a buy at nothing holds nothing
    ("call", "sell", "0", False),
    ("call", "buy", "1", True),  # one tick: holds a tick per unit
    ("call", "sell", "50000", False),  # a sell at the most it can pay holds nothing
    ("call", "sell", "49999", True),
    ("future", "buy", "50000", False),
    ("future", "buy", "50001", True),
    ("future", "sell", "150000", False),
    ("future", "sell", "149999", True),
])
def test_an_order_price_lies_a_tick_inside_what_the_contract_can_be_worth(now, kind, side, price, accepted):
    contract = ContractFactory(kind=kind, strike_px=None if kind == "future" else D("100000"))
    client = FundLockFactory(currency=contract.collateral, fundlock=D("1000000")).client

    order = validated(client, contract, side=side, price=price, now=now)

    assert order.state == ("accepted" if accepted else "rejected")
    if accepted:
        assert order.order_value > 0
    else:
        assert order.reject_reason == "price_out_of_bounds"
        with pytest.raises(ApplicationError) as refused:
            order_submit(client=client, request=request(contract, side=side, price=price), now=now)
        assert (refused.value.code, refused.value.http_status) == ("price_out_of_bounds", 400)


@pytest.mark.django_db
def test_the_contract_shows_the_order_price_bounds():
    contract = ContractFactory()
    body = APIClient().get(f"/api/v1/contracts/{contract.symbol}").json()
    assert (body["price_min"], body["price_max"]) == ("1", "49999")


@pytest.mark.django_db
@pytest.mark.parametrize(("side", "price", "quantity", "code"), [
    ("buy", "49999", "99999999999999999999", "order_too_large"),  # 20 digits of quantity at a high price
    ("sell", "1", "99999999999999999999", "order_too_large"),  # holds 49999 per unit: still far too large
    ("buy", "1", "2000000000000000", "order_too_large"),  # pays at most 50000 x 2e15 = 1e20: one digit too many
    ("buy", "1", "1999999999999999.99", None),  # 99999999999999999500 at most: fits
])
def test_an_order_whose_amounts_do_not_fit_in_storage_is_rejected_not_raised(now, side, price, quantity, code):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral, fundlock=D("99999999999999999999")).client

    order = validated(client, contract, side=side, price=price, quantity=quantity, now=now)

    assert (order.state, order.reject_reason) == (("rejected", code) if code else ("accepted", ""))
    if code:
        with pytest.raises(ApplicationError) as refused:
            order_submit(client=client, request=request(contract, side=side, price=price, quantity=quantity), now=now)
        assert refused.value.code == code


@pytest.mark.django_db
def test_an_order_whose_worst_case_cannot_be_computed_exactly_is_refused(now):
    # 38 significant digits times 23: more than the exact context's 60 digits
    contract = ContractFactory(tick_size=D("1E-18"), lot_size=D("1E-18"))
    price, quantity = D("49999.999999999999999999"), D("12345678901234567890.123456789012345678")
    assert order_rule_violation(contract=contract, side="sell", kind="limit", price=price, quantity=quantity,
                                now=now) == "order_too_large"


@pytest.fixture
def capped(settings):
    settings.CCP_MAX_OPEN_ORDERS = 3
    contract = ContractFactory()
    return contract, FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client


@pytest.mark.django_db
def test_order_entry_refuses_a_client_at_the_open_order_cap(capped, now, api_as):
    contract, client = capped
    first = [order_submit(client=client, request=request(contract, client_order_id=f"c-{n}"), now=now)[0]
             for n in range(3)]

    with pytest.raises(ApplicationError) as refused:
        order_submit(client=client, request=request(contract, client_order_id="c-3"), now=now)
    assert (refused.value.code, refused.value.http_status, refused.value.extra) == ("too_many_open_orders", 409,
                                                                                   {"limit": 3})
    response = api_as(client).post("/api/v1/orders", {"client_order_id": "c-3", "contract": contract.symbol,
                                                      "side": "buy", "price": "100", "quantity": "1"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "too_many_open_orders")
    # a retry of a stored order still gets it
    assert order_submit(client=client, request=request(contract, client_order_id="c-0"), now=now) == (first[0], False)
    # a cancelled order frees its place
    order_cancel(client=client, order_id=first[0].pk, now=now)
    assert order_submit(client=client, request=request(contract, client_order_id="c-3"), now=now)[1]


@pytest.mark.django_db
def test_the_validator_rejects_orders_beyond_the_cap(capped, now):
    contract, client = capped
    orders = [validated(client, contract, now=now) for _ in range(4)]
    assert [(o.state, o.reject_reason) for o in orders] == [("accepted", "")] * 3 + [
        ("rejected", "too_many_open_orders")]
    order_cancel(client=client, order_id=orders[0].pk, now=now)
    assert validated(client, contract, now=now).state == "accepted"


@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_never_hold_more_validated_orders_than_the_cap(settings, api_as):
    from celery_app import app

    settings.CCP_MAX_OPEN_ORDERS = 5
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral, fundlock=D("100000")).client
    api_as(client)  # the token, before the threads start

    def submit(n: int) -> int:
        try:
            body = {"client_order_id": f"race-{n}", "contract": contract.symbol, "side": "buy", "price": "100",
                    "quantity": "1"}
            return api_as(client).post("/api/v1/orders", body, format="json").status_code
        finally:
            connections.close_all()

    app.conf.task_always_eager = True  # each request's commit runs its validation in that thread
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(submit, range(20)))
    finally:
        app.conf.task_always_eager = False

    assert set(statuses) <= {202, 409}
    states = list(Order.objects.values_list("state", "reject_reason"))
    assert states.count(("accepted", "")) == 5
    assert set(states) <= {("accepted", ""), ("rejected", "too_many_open_orders")}
    assert len(states) == statuses.count(202)
