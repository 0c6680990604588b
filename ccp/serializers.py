"""DRF fields shared by every API: money travels as strings in both directions."""

from decimal import Decimal, InvalidOperation

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ccp.money import DECIMAL_PLACES, MAX_DIGITS, money_str


@extend_schema_field({"type": "string", "format": "decimal", "example": "12.5",
                      "description": "decimal as a string, up to 18 places"})
class MoneyField(serializers.Field):
    """A decimal amount, price or quantity. JSON numbers are refused: floats cannot carry money exactly."""

    default_error_messages = {
        "not_string": "Send this as a string, e.g. \"12.5\": JSON numbers lose precision.",
        "invalid": "Not a decimal number.",
        "places": f"At most {DECIMAL_PLACES} decimal places.",
        "too_large": f"At most {MAX_DIGITS - DECIMAL_PLACES} digits before the decimal point.",
        "negative": "Must not be negative.",
    }

    def to_internal_value(self, data) -> Decimal:
        if not isinstance(data, str):
            self.fail("not_string")
        try:
            value = Decimal(data.strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if value.as_tuple().exponent < -DECIMAL_PLACES and value != value.quantize(Decimal(1).scaleb(-DECIMAL_PLACES)):
            self.fail("places")
        if abs(value) >= Decimal(10) ** (MAX_DIGITS - DECIMAL_PLACES):
            self.fail("too_large")
        if value < 0:
            self.fail("negative")
        return value

    def to_representation(self, value: Decimal) -> str:
        return money_str(value)

