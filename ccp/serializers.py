"""DRF fields shared by every API: money travels as strings in both directions, text is text."""

from __future__ import annotations

import re
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ccp.money import DECIMAL_PLACES, MAX_DIGITS, money_str

INTEGER_DIGITS = MAX_DIGITS - DECIMAL_PLACES
# The one grammar of a number in the API: optional minus, 1-20 ASCII digits, optionally a point and
# 1-18 digits (what NUMERIC(38, 18) stores). No exponent, spaces, '_', '+', other scripts' digits.
NUMBER_PATTERN = rf"^-?[0-9]{{1,{INTEGER_DIGITS}}}(\.[0-9]{{1,{DECIMAL_PLACES}}})?$"
_NUMBER = re.compile(NUMBER_PATTERN, re.ASCII)


def parse_number(text: str, *, signed: bool = False) -> Decimal:
    """The Decimal a decimal string means; ValueError (a message for people) if it breaks the
    grammar. Checked on the text, before any arithmetic: no input can make Decimal round, overflow
    or work for long."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"Not a plain decimal string: up to {INTEGER_DIGITS} digits 0-9, optionally a '.' and up "
                         f"to {DECIMAL_PLACES} digits, e.g. \"12.5\".")
    if text.startswith("-"):
        if not signed:
            raise ValueError("Must not be negative.")
        if not text.strip("-0."):
            raise ValueError("No negative zero: send 0.")
    return Decimal(text)


@extend_schema_field({"type": "string", "format": "decimal", "pattern": NUMBER_PATTERN.replace("-?", ""),
                      "example": "12.5",
                      "description": "a plain decimal string: digits, an optional '.' and up to 18 places"})
class MoneyField(serializers.Field):
    """A decimal amount, price or quantity, as a string in the grammar of ``parse_number``. JSON
    numbers are refused: floats cannot carry money exactly. Every refusal has the code
    ``invalid_number``."""

    default_error_messages = {
        "not_string": "Send this as a string, e.g. \"12.5\": JSON numbers lose precision.",
    }
    signed = False

    def to_internal_value(self, data) -> Decimal:
        if not isinstance(data, str):
            raise serializers.ValidationError(self.error_messages["not_string"], code="invalid_number")
        try:
            return parse_number(data, signed=self.signed)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_number") from exc

    def to_representation(self, value: Decimal) -> str:
        return money_str(value)


def _text(field: serializers.Field, data) -> str:
    # A JSON number or boolean is not text (DRF's CharField would turn 12 into "12"); a lone UTF-16
    # surrogate ("\ud800" in JSON) cannot be stored.
    if not isinstance(data, str):
        field.fail("not_text")
    try:
        data.encode("utf-8")
    except UnicodeEncodeError:
        field.fail("not_text")
    return data


class TextField(serializers.CharField):
    """A JSON string: nothing else is turned into one. NUL characters are refused (DRF's default)."""

    default_error_messages = {"not_text": "Send a string."}

    def to_internal_value(self, data) -> str:
        return super().to_internal_value(_text(self, data))


class PatternField(serializers.RegexField):
    """A JSON string matching a regular expression."""

    default_error_messages = {"not_text": "Send a string."}

    def to_internal_value(self, data) -> str:
        return super().to_internal_value(_text(self, data))


# Clients' idempotency keys (client_order_id, client_withdrawal_id).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
CLIENT_ID_HELP = "your idempotency key: 1-64 of A-Z a-z 0-9 _ . : -"


@extend_schema_field({"type": "string", "format": "decimal", "pattern": NUMBER_PATTERN, "example": "-12.5",
                      "description": "a plain decimal string, signed: an optional '-', digits, an optional '.' "
                                     "and up to 18 places"})
class SignedMoneyField(MoneyField):
    """A decimal that may be negative: a settle value, a position, a cash movement."""

    signed = True
