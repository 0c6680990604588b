"""Money arithmetic at the stored precision (38 digits, 18 places) in every thread."""

import threading
from decimal import Decimal as D

import pytest

from ccp.money import PRECISION, quantize
from ccp.serializers import MoneyField


def test_large_amounts_keep_every_place_in_this_thread_and_new_ones():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(
        quantize(D("12345678901234567890.123456789012345678") + D("0.000000000000000001"))))
    thread.start()
    thread.join()
    assert seen == [D("12345678901234567890.123456789012345679")]
    assert quantize(D("69990000000.5") * D("1.000000000000000001")) == D("69990000000.500000069990000000")
    assert PRECISION >= 38


def test_the_api_refuses_too_many_places_on_a_large_amount_with_its_code():
    from rest_framework.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        MoneyField().to_internal_value("12345678901.1234567890123456789")
    assert refused.value.get_codes() == ["invalid_number"]
