"""Issue 10, class 3: money and quantities are plain decimal strings, one grammar in one place
(``ccp.serializers.parse_number``); anything else is ``invalid_number``."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccp.orders.models import Order
from ccp.serializers import parse_number
from tests.factories import ClientFactory, ContractFactory, FundLockFactory

LENIENT = ["1_0", "١٠٠", "1E+5", "1e5", "-0", "+1", " 1", "1 ", "1.", ".5", "0x10", "1,5", "NaN", "Infinity",
           "", "１００", "1\n", "-1", "0E-1000000", "1" * 21, "0." + "0" * 19, "1." + "1" * 19]


@pytest.mark.parametrize("text", LENIENT)
def test_anything_but_a_plain_decimal_is_refused(text):
    with pytest.raises(ValueError):
        parse_number(text)


@pytest.mark.parametrize(("text", "value"), [("0", Decimal(0)), ("12.5", Decimal("12.5")), ("007", Decimal(7)),
                                             ("9" * 20 + "." + "9" * 18, Decimal("9" * 20 + "." + "9" * 18)),
                                             ("1.000000000000000000", Decimal(1))])
def test_plain_decimals_within_the_storage_digits_are_read_exactly(text, value):
    assert parse_number(text) == value


def test_signed_fields_take_a_minus():
    assert parse_number("-12.5", signed=True) == Decimal("-12.5")
    assert parse_number("-0.000000000000000001", signed=True) == Decimal("-1E-18")
    assert parse_number("-10", signed=True) == Decimal(-10)


@pytest.mark.parametrize("text", ["-0", "-0.0", "-00", "-000.000000000000000000"])
def test_a_negative_zero_is_refused_in_signed_fields_too(text):
    with pytest.raises(ValueError):
        parse_number(text, signed=True)


@pytest.mark.django_db
def test_the_api_refuses_a_negative_zero_margin_with_invalid_number(api_as):
    # it was read as 0 and refused later, with amount_invalid (or unknown_contract first), not as the README says
    response = api_as(ClientFactory()).post("/api/v1/positions/margin", {"contract": "BTC-USDC-PERP", "amount": "-0"},
                                            format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_number"
    assert "amount" in response.json()["extra"]["fields"]


@given(st.decimals(min_value=Decimal(0), max_value=Decimal("9" * 20), places=18, allow_nan=False))
def test_every_storable_amount_round_trips_through_its_text(value):
    assert parse_number(format(value, "f")) == value


@given(st.text(max_size=40))
def test_no_text_makes_the_parser_fail_other_than_with_value_error(text):
    try:
        value = parse_number(text)
    except ValueError:
        return
    assert value >= 0 and value.as_tuple().exponent >= -18


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["1_0", "١٠٠", "1E+5", "-0"])
def test_the_api_refuses_them_with_invalid_number(api_as, text):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral).client
    body = {"client_order_id": "o-1", "contract": contract.symbol, "side": "buy", "price": "100", "quantity": text}
    response = api_as(client).post("/api/v1/orders", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_number" and "quantity" in response.json()["extra"]["fields"]
    assert not Order.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [12, 12.5, True, None, ["1"], {"a": 1}])
def test_json_numbers_and_other_types_are_refused(api_as, value):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral).client
    body = {"client_order_id": "o-1", "contract": contract.symbol, "side": "buy", "price": value, "quantity": "1"}
    response = api_as(client).post("/api/v1/orders", body, format="json")
    assert response.status_code == 400 and response.json()["code"] in {"invalid_number", "invalid_input"}


@pytest.mark.django_db
@pytest.mark.parametrize("value", [12345, 1.5, True, ["x"]])
def test_a_client_order_id_must_be_a_string(api_as, value):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral).client
    body = {"client_order_id": value, "contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1"}
    response = api_as(client).post("/api/v1/orders", body, format="json")
    assert response.status_code == 400 and "client_order_id" in response.json()["extra"]["fields"]
    assert not Order.objects.exists()
