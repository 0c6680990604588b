"""Money and quantities: Decimal with crypto precision, quantized in one place.

Amounts, prices and quantities are stored as NUMERIC(38, 18): 18 places cover every ERC-20 token
(wei precision) and 20 integer digits cover any realistic notional.
"""

import decimal
from decimal import ROUND_DOWN, Decimal

from django.db import models

DECIMAL_PLACES = 18
MAX_DIGITS = 38
QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
ZERO = Decimal(0)

# Python's default context keeps 28 significant digits: a stored amount has up to 38, so sums of
# large ones would round silently and quantizing them would raise. Every thread of the process
# computes with 60 digits (this module is imported by every model, before any worker thread starts).
PRECISION = 60
decimal.DefaultContext.prec = PRECISION  # threads started from now on
decimal.getcontext().prec = PRECISION  # this one


def to_decimal(value: str | int | Decimal) -> Decimal:
    """Decimal from a string or an int; floats are refused, they cannot carry money exactly."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a string")
    return Decimal(value)


def money_str(value: Decimal) -> str:
    """Plain decimal text without trailing zeros: 100000.000000000000000000 -> "100000"."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantize(value: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
    """Round to storage precision; the default rounds towards zero so the CCP never pays out more."""
    return value.quantize(QUANTUM, rounding=rounding)


class MoneyField(models.DecimalField):
    """A DecimalField at the project's crypto precision."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MAX_DIGITS)
        kwargs.setdefault("decimal_places", DECIMAL_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "ccp.money.MoneyField", args, kwargs
