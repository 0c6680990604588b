from decimal import Decimal as D

from ccp.prices.settlement import settlement_price

RULE = {"max_deviation": D("0.01"), "min_venues": 2}


def test_the_median_of_agreeing_venues():
    assert settlement_price({"gemini": D("100000"), "coinbase": D("100040"), "binance": D("100010")}, **RULE) == (
        D("100010"), ["binance", "coinbase", "gemini"])


def test_a_venue_far_from_the_others_is_dropped():
    price, used = settlement_price({"gemini": D("100000"), "coinbase": D("100020"), "binance": D("90000")}, **RULE)
    assert used == ["coinbase", "gemini"] and price == D("100010")


def test_too_few_venues_give_no_price():
    assert settlement_price({"gemini": D("100000")}, **RULE) is None
    assert settlement_price({"gemini": D("100000"), "binance": D("120000")}, **RULE) is None
