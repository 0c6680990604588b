"""Order entry parses a plain order request (strings and booleans of the right grammar, no legs) without the
serializer: for every request it reads so, it gives the fields the serializer gives, value for value and type
for type; every other request is left to the serializer."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from ccp.orders.apis import _plain_fields, order_fields, order_parser

PLAIN = {"client_order_id": "a-1", "contract": "BTC-USDC-F", "side": "buy", "price": "100", "quantity": "0.5"}


def serializer_fields(data) -> dict | None:
    """What the serializer parses from ``data`` (None when it refuses it)."""
    try:
        return dict(order_parser().run_validation(data))
    except serializers.ValidationError:
        return None


def same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(type(a[k]) is type(b[k]) and a[k] == b[k] for k in a)


def test_a_plain_order_is_read_without_the_serializer_to_the_same_fields():
    for data in (PLAIN, {**PLAIN, "kind": "market", "time_in_force": "ioc", "reduce_only": True,
                         "self_trade_prevention": "cancel_both", "trigger": "stop", "trigger_price": "90",
                         "trigger_source": "last", "leverage": "5", "margin_mode": "isolated"}):
        fields = _plain_fields(data)
        assert fields is not None and same(fields, serializer_fields(data))
    assert _plain_fields(PLAIN)["price"] == Decimal("100")


def test_what_is_not_plain_goes_to_the_serializer():
    for change in ({"price": 100}, {"price": " 100"}, {"price": "1e2"}, {"client_order_id": " a"},
                   {"client_order_id": "a\n"}, {"contract": "BTC USDC"}, {"side": "BUY"}, {"side": None},
                   {"reduce_only": "true"}, {"reduce_only": 1}, {"take_profit": {"trigger_price": "1", "price": "1"}},
                   {"quantity": "-1"}, {"contract": "x" * 65}):
        assert _plain_fields({**PLAIN, **change}) is None, change
    assert _plain_fields([PLAIN]) is None
    assert _plain_fields({k: v for k, v in PLAIN.items() if k != "side"}) is None
    # the serializer still parses (or refuses) them as before
    assert order_fields({**PLAIN, "reduce_only": "true", "price": "100"})["reduce_only"] is True


_TEXTS = st.one_of(
    st.sampled_from(["a", "a-1", "BTC-USDC-F", "buy", "sell", "limit", "market", "gtc", "ioc", "fok", "post_only",
                     "cancel_incoming", "cancel_resting", "cancel_both", "stop", "take_profit", "mark", "index",
                     "last", "cross", "isolated", "1", "100", "0.5", "-1", "1.", ".5", "01", "1e2", " 1", "1 ",
                     "", " ", "a\n", "a\x00", "\ud800", "é", "x" * 64, "x" * 65, "9" * 21, "1." + "1" * 19]),
    st.text(max_size=8), st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True))
_OTHERS = st.one_of(st.booleans(), st.none(), st.integers(-5, 5), st.floats(allow_nan=False),
                    st.lists(st.integers(), max_size=1), st.dictionaries(st.sampled_from(["price"]), _TEXTS))
_VALUES = st.one_of(_TEXTS, _TEXTS, _TEXTS, _OTHERS)
_NAMES = st.sampled_from(["client_order_id", "contract", "side", "kind", "price", "quantity", "time_in_force",
                          "reduce_only", "self_trade_prevention", "trigger", "trigger_price", "trigger_source",
                          "leverage", "margin_mode", "take_profit", "stop_loss", "other"])


@settings(max_examples=2000, deadline=None)
@given(changes=st.dictionaries(_NAMES, _VALUES, max_size=3),
       dropped=st.sets(st.sampled_from(sorted(PLAIN)), max_size=1))
def test_the_plain_reading_is_the_serializers(changes, dropped):
    data = {k: v for k, v in {**PLAIN, **changes}.items() if k not in dropped}
    fields = _plain_fields(data)
    if fields is not None:
        expected = serializer_fields(data)
        assert expected is not None and same(fields, expected), (data, fields, expected)
