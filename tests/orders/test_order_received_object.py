"""A new order's object, built from its values in column order, is the one the keyword constructor gives."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from ccp.orders.models import Order, OrderState
from ccp.orders.services import _TERMS, OrderRequest, _order_received

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("terms", [
    {"side": "buy", "kind": "limit", "price": D("100"), "quantity": D("1")},
    {"side": "sell", "kind": "market", "price": D("90"), "quantity": D("2"), "time_in_force": "ioc",
     "reduce_only": True, "self_trade_prevention": "cancel_both", "attached": {"tp": {"price": "1"}}},
    {"side": "buy", "kind": "limit", "price": D("100"), "quantity": D("1"), "trigger": "stop",
     "trigger_price": D("101"), "trigger_source": "last", "leverage": D("5"), "margin_mode": "isolated"},
])
def test_the_same_object_as_the_keyword_constructor(trader, contract, terms):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    request = OrderRequest(client_order_id="a", contract=contract, **terms)
    built = _order_received(trader, request, now)
    expected = Order(client=trader, contract=contract, client_order_id="a", state=OrderState.RECEIVED,
                     created_at=now, updated_at=now, **{name: getattr(request, name) for name in _TERMS})
    for field in Order._meta.concrete_fields:
        assert getattr(built, field.attname) == getattr(expected, field.attname), field.attname
        assert type(getattr(built, field.attname)) is type(getattr(expected, field.attname)), field.attname
    assert built.client is trader and built.contract is contract
    assert built._state.adding and built._state.db is None
