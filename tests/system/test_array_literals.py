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
