"""The close writes its input document's text directly (``input_text``): it must be the very text
``canonical_json`` gives for the same document, or the stored hash would not be the document's."""

from decimal import Decimal as D

import pytest
from django.db import connection

from ccp.matching.auction import canonical_json, input_text, order_entries
from ccp.money import money_str

ROWS = [  # id, client, contract, side, price, quantity, priority
    (7, "0xabc", "BTC-USDC-20261225-100000-C", "buy", D("2100.000000000000000000"), D("0.300000000000000000"), 7),
    (12, 'odd "client" \\ é \u2028', "BTC-USDC-20261225-F", "sell", D("0"), D("12345678901234567890.5"), 3),
    (1000000000001, "0xabc", "BTC-USDC-20261225-100000-C", "sell", D("0.000000000000000001"), D("1E+2"), 0),
]


def test_input_text_is_the_canonical_json_of_the_same_document():
    document = {"format": "ccp-auction-input/1", "auction": "BTC/USDC 2026-12-05T10:00:00+00:00 ü",
                "settings": {"time_limit_s": "10", "mip_rel_gap": "0"}, "contracts": [{"symbol": "X", "strike": None}],
                "clients": [{"id": "0xabc", "budget": "1", "positions": {"X": "-0.5"}}], "orders": []}
    whole = {**document, "orders": order_entries((str(pk), client, contract, side, price, quantity, priority)
                                                  for pk, client, contract, side, price, quantity, priority in ROWS)}

    text = input_text(document, [(pk, client, contract, side, money_str(price), money_str(quantity), priority)
                                 for pk, client, contract, side, price, quantity, priority in ROWS])

    assert text == canonical_json(whole)


def test_a_document_without_orders_gets_an_empty_list():
    assert input_text({"format": "f", "auction": "a"}, []) == canonical_json({"format": "f", "auction": "a",
                                                                               "orders": []})


@pytest.mark.django_db
def test_the_snapshot_formats_prices_and_quantities_as_money_str():
    # the close reads them as trim_scale(...)::text from the order columns (numeric(38, 18))
    values = ["2100", "0.3", "0", "0.000000000000000001", "12345678901234567890.5", "100000", "1.10"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT trim_scale(v::numeric(38, 18))::text FROM unnest(%s::text[]) AS v", [values])
        texts = [row[0] for row in cursor.fetchall()]
    assert texts == [money_str(D(v).quantize(D("1e-18"))) for v in values]
