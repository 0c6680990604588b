"""The input document, both ways. The close writes its text directly (``input_text``): it must be the
very text ``canonical_json`` gives for the same document, or the stored hash would not be the
document's. The solve reads its orders in one pass (``input_from_document``) and still names the first
problem of a broken one."""

from decimal import Decimal as D

import pytest
from django.db import connection

from ccp.matching.auction import OrderSpec, canonical_json, input_from_document, input_text, order_entries
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


def _document(*orders: dict) -> dict:
    return {"format": "ccp-auction-input/1", "contracts": [
        {"symbol": "C", "kind": "call", "strike": "100", "floor": "50", "cap": "150", "tick": "1", "lot": "0.1",
         "portfolio": "P"}], "clients": [{"id": "a", "budget": "10"}, {"id": "b", "budget": "10"}],
        "orders": list(orders)}


def _order(n: int, **changes) -> dict:
    return {"id": str(n), "client": "a", "contract": "C", "side": "buy", "price": "12", "quantity": "0.3",
            "priority": n, **changes}


def test_a_sound_document_reads_every_order_with_shared_numbers():
    auction = input_from_document(_document(_order(1), _order(2, client="b", side="sell", price="12.0"),
                                            _order(3, priority="7")))
    assert auction.orders == (OrderSpec("1", "a", "C", "buy", D("12"), D("0.3"), 1),
                              OrderSpec("2", "b", "C", "sell", D("12.0"), D("0.3"), 2),
                              OrderSpec("3", "a", "C", "buy", D("12"), D("0.3"), 7))


@pytest.mark.parametrize(("bad", "message"), [
    ({"price": 12}, "order 2.price: numbers are decimal strings"),
    ({"quantity": "x"}, "order 2.quantity: not a decimal"),
    ({"price": "NaN"}, "order 2.price: not finite"),
    ({"side": "hold"}, "order 2: side must be buy or sell"),
    ({"contract": "D"}, "order 2: unknown contract or client"),
    ({"client": "z"}, "order 2: unknown contract or client"),
    ({"quantity": "0"}, "order 2: quantity must be positive"),
])
def test_a_broken_order_is_named_with_its_first_problem(bad, message):
    # order 3 is broken too: the message names order 2's problem
    with pytest.raises(ValueError, match=message):
        input_from_document(_document(_order(1), _order(2, **bad), _order(3, side="hold")))


def test_order_ids_must_be_unique():
    with pytest.raises(ValueError, match="order ids must be unique"):
        input_from_document(_document(_order(1), _order(2, id="1")))
