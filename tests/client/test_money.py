"""The client's money: the API's decimal strings become Decimal by field name, at any depth, and other
strings stay text; what it sends is plain decimal text, and a float is refused."""

from decimal import Decimal as D

import pytest
from ccp_client.money import decimals, number_text


def test_money_fields_are_decimals_at_any_depth_and_text_stays_text():
    answer = {"id": 7, "client_order_id": "123", "price": "2524.3", "filled_quantity": "0.01",
              "average_fill_price": None, "contract": "BTC-20261212-F", "nonce": "42",
              "position": {"quantity": "-3", "entry_price": "99000.5", "unrealised_pnl": "-12.25"},
              "bids": [{"price": "100", "quantity": "2", "orders": 1}], "note": "1.5"}
    parsed = decimals(answer)
    assert parsed["price"] == D("2524.3") and isinstance(parsed["price"], D)
    assert parsed["position"] == {"quantity": D(-3), "entry_price": D("99000.5"), "unrealised_pnl": D("-12.25")}
    assert parsed["bids"] == [{"price": D(100), "quantity": D(2), "orders": 1}]
    assert (parsed["client_order_id"], parsed["nonce"], parsed["note"], parsed["id"]) == ("123", "42", "1.5", 7)
    assert parsed["average_fill_price"] is None


@pytest.mark.parametrize(("value", "text"), [(D("12.50"), "12.50"), (3, "3"), ("0.01", "0.01"), (D("1E+5"), "100000")])
def test_numbers_go_out_as_plain_decimal_text(value, text):
    assert number_text(value) == text


@pytest.mark.parametrize("value", [0.1, True])
def test_a_float_is_refused(value):
    with pytest.raises(TypeError):
        number_text(value)
