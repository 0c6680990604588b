"""Money in and out as ``Decimal``: the API sends money, prices and quantities as decimal strings and
takes them the same way; a float never enters or leaves the client."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,18})?\Z")  # the API's one number grammar

# Fields that carry money, prices or quantities in the API's answers and events; any field named with
# one of these endings too (e.g. a position's ``entry_price`` or ``unrealised_pnl``).
MONEY_FIELDS = frozenset({"fundlock", "available", "lockups", "total", "balance", "unrecorded", "deposit",
                          "withdrawal", "adjustment", "expiry", "position_delta", "amount", "quantity", "price",
                          "price_min", "price_max"})
MONEY_ENDINGS = ("_price", "_px", "_pnl", "_quantity", "_value", "_amount", "_size")


def is_money_field(name: str) -> bool:
    return name in MONEY_FIELDS or name.endswith(MONEY_ENDINGS)


def decimals(value: Any) -> Any:
    """``value`` (parsed JSON) with every money field's decimal string as a ``Decimal``, at any depth.
    Other strings stay strings (a ``client_order_id`` of digits is not a number)."""
    if isinstance(value, list):
        return [decimals(item) for item in value]
    if isinstance(value, dict):
        return {key: Decimal(item) if isinstance(item, str) and is_money_field(key) and NUMBER.match(item)
                else decimals(item) for key, item in value.items()}
    return value


def number_text(value: Decimal | int | str) -> str:
    """The API's text for a number: plain digits, no exponent. A float is refused: it is not exact."""
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"money is a Decimal, an int or a decimal string, not {type(value).__name__}")
    text = format(Decimal(value), "f")
    if not NUMBER.match(text):
        raise ValueError(f"not a plain decimal the API takes: {value!r}")
    return text
