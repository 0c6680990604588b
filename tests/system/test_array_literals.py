"""ccp.db.number_array and text_array: the array literals the bulk paths send in place of Python lists reach
PostgreSQL as the same arrays, whatever the strings hold."""

import pytest
from django.db import connection

from ccp.db import number_array, text_array

pytestmark = pytest.mark.django_db

AWKWARD = ["", "NULL", "null", "a,b", "{x}", '"quoted"', "back\\slash", "tab\there", "new\nline", " spaced ",
           "ünïcode", "limit", "\\\"", "}"]


def _round_trip(sql: str, literal: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, [literal])
        return cursor.fetchone()[0]


def test_strings_come_back_as_they_were_sent():
    assert _round_trip("SELECT %s::text[]", text_array(AWKWARD)) == AWKWARD


def test_integers_come_back_in_order_with_big_and_negative_ones():
    values = [3, 1, -7, 0, 2**62, 10**15 + 1]
    assert _round_trip("SELECT %s::bigint[]", number_array(values)) == values


def test_empty_arrays():
    assert _round_trip("SELECT %s::text[]", text_array([])) == []
    assert _round_trip("SELECT %s::bigint[]", number_array([])) == []


def test_a_bool_or_a_fraction_is_refused_not_read_as_a_number():
    from decimal import Decimal

    from django.db import DataError, transaction

    for bad in ([True], [Decimal("1.5")]):
        with pytest.raises(DataError), transaction.atomic():
            _round_trip("SELECT %s::bigint[]", number_array(bad))


def test_each_columns_literal_reads_as_the_list_psycopg_would_send():
    """The literals ``unnest_source`` sends for a new order's columns (choices, booleans, aware datetimes in
    any zone, columns of NULLs only) are the arrays psycopg's list dumper sends."""
    from datetime import UTC, datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from ccp.db import _array_param, _db_type
    from ccp.orders.models import Order, OrderKind

    def field(name):
        return Order._meta.get_field(name)

    now = datetime(2026, 12, 6, 4, 5, 6, 789012, tzinfo=UTC)
    cases = [
        (field("kind"), [OrderKind.LIMIT, OrderKind.MARKET, "limit"]),
        (field("reduce_only"), [True, False, None, True]),
        (field("created_at"), [now, now.astimezone(timezone(timedelta(hours=-3, minutes=-30))),
                               now.astimezone(ZoneInfo("Europe/Paris")), None, datetime(1, 1, 1, tzinfo=UTC)]),
        (field("triggered_at"), [None, None]),
        (field("attached"), [None, None, None]),
        (field("book_priority"), [None]),
        (field("trigger_price"), [None, None]),
    ]
    for column, values in cases:
        literal = _array_param(column, values)
        assert isinstance(literal, str), column.name
        sql = f"SELECT %s::{_db_type(column)}[]"
        assert _round_trip(sql, literal) == _round_trip(sql, values), column.name
    # what has no literal is left to psycopg: naive datetimes, a bool in a text column, a JSON value
    assert _array_param(field("created_at"), [datetime(2026, 1, 1)]) == [datetime(2026, 1, 1)]
    assert _array_param(field("kind"), ["limit", True]) == ["limit", True]
    assert _array_param(field("attached"), [None, {"a": 1}]) == [None, {"a": 1}]
