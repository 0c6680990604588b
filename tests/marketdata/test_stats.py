"""24 h statistics from a known trade list: the window's edges (1,440 whole minutes ending with the
current one), the change against the last price before the window or the window's first, open interest
from long positions; GET /stats and /contracts/<symbol>/stats."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.clock import utcnow
from ccp.marketdata.selectors import stats_list, window_start
from ccp.risk.models import Position
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory
from tests.marketdata.conftest import book

pytestmark = pytest.mark.django_db

NOW_DAY2 = datetime(2026, 11, 22, 9, 30, 20, tzinfo=UTC)  # window: 2026-11-21 09:31 .. 2026-11-22 09:31


def t(day: int, hh: int, mm: int, ss: float = 0) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC) + timedelta(hours=hh, minutes=mm, seconds=ss)


def row(stats) -> tuple:
    return (stats.last_price, stats.change, stats.change_percent, stats.high, stats.low, stats.volume,
            stats.trade_count, stats.open_interest)


@pytest.fixture
def market():
    """Four contracts: ``both`` with trades before and in the window, ``inside`` only in it, ``before``
    only before it, ``none`` without trades."""
    both, inside, before, none = (ContractFactory(strike_px=D(k)) for k in ("100000", "110000", "120000", "130000"))
    book(both, [("80", "1")], at=t(21, 9, 0), ref="a-1")
    book(both, [("100", "1")], at=t(21, 9, 30, 59.999999), ref="a-2")  # the last before the window
    book(both, [("110", "2")], at=t(21, 9, 31), ref="a-3")  # the window's first minute
    book(both, [("90", "1")], at=t(22, 9, 0), ref="a-4")
    book(both, [("125", "0.5")], at=t(22, 9, 30, 10), ref="a-5")  # the current minute
    book(inside, [("300", "1")], at=t(21, 9, 31), ref="b-1")
    book(inside, [("200", "1")], at=t(22, 9, 30, 59.999999), ref="b-2")
    book(before, [("7", "1")], at=t(21, 9, 30), ref="c-1")
    return {"both": both, "inside": inside, "before": before, "none": none}


def test_the_window_is_the_1440_minutes_ending_with_the_current_one():
    assert window_start(NOW_DAY2) == t(21, 9, 31)
    assert window_start(t(22, 9, 31)) == t(21, 9, 32)
    assert window_start(t(22, 9, 30, 59.999999)) == t(21, 9, 31)


def test_stats_from_a_known_trade_list(market):
    both, inside, before, none = stats_list(contracts=list(market.values()), now=NOW_DAY2)
    # the change is against the last trade before the window (100), high/low/volume/count over the window
    assert row(both) == (D("125"), D("25"), D("25"), D("125"), D("90"), D("3.5"), 3, D("0"))
    assert (both.window_start, both.window_end) == (t(21, 9, 31), t(22, 9, 31))
    # without a trade before the window: against the window's first trade (300), half-even to 0.01
    assert row(inside) == (D("200"), D("-100"), D("-33.33"), D("300"), D("200"), D("2"), 2, D("0"))
    # trades only before the window: a last price, no change, nothing traded in the window
    assert row(before) == (D("7"), D("0"), D("0"), None, None, D("0"), 0, D("0"))
    # no trade at all
    assert row(none) == (None, None, None, None, None, D("0"), 0, D("0"))


def test_a_minute_later_the_first_minute_leaves_the_window(market):
    # at 09:31 the window starts at 09:32 the day before: the 09:31 trade (110) is the last before it
    both, inside = stats_list(contracts=[market["both"], market["inside"]], now=t(22, 9, 31))
    assert row(both) == (D("125"), D("15"), D("13.64"), D("125"), D("90"), D("1.5"), 2, D("0"))
    assert row(inside) == (D("200"), D("-100"), D("-33.33"), D("200"), D("200"), D("1"), 1, D("0"))


def test_open_interest_is_the_sum_of_long_positions(market):
    contract = market["both"]
    for quantity in ("3", "2", "-5"):
        Position.objects.create(client=ClientFactory(), contract=contract, quantity=D(quantity), updated_at=NOW)
    Position.objects.create(client=ClientFactory(), contract=market["none"], quantity=D("0"), updated_at=NOW)
    both, none = stats_list(contracts=[contract, market["none"]], now=NOW_DAY2)
    assert both.open_interest == D("5")
    assert none.open_interest == D("0")


def test_stats_apis_are_public_with_money_as_strings():
    # given a trade a minute ago and a long position
    contract, halted = ContractFactory(), ContractFactory(strike_px=D("110000"), state="halted")
    book(contract, [("100", "1"), ("104.5", "2")], at=utcnow() - timedelta(minutes=1), ref="auction-1")
    Position.objects.create(client=ClientFactory(), contract=contract, quantity=D("3"), updated_at=NOW)
    api = APIClient()
    body = api.get(f"/api/v1/contracts/{contract.symbol}/stats").json()
    assert {k: v for k, v in body.items() if not k.startswith("window")} == {
        "contract": contract.symbol, "last_price": "104.5", "change": "4.5", "change_percent": "4.5", "high": "104.5",
        "low": "100", "volume": "3", "trade_count": 2, "open_interest": "3"}
    assert body["window_start"].endswith(":00Z")
    # every listed contract, by symbol, paginated; a halted one is not listed
    listing = api.get("/api/v1/stats").json()
    assert [s["contract"] for s in listing["results"]] == [contract.symbol] and listing["count"] == 1
    assert halted.symbol not in str(listing)
    assert api.get("/api/v1/stats", {"limit": "1", "offset": "1"}).json()["results"] == []


@pytest.mark.parametrize(("path", "query"), [
    ("/api/v1/stats", {"contract": "x"}), ("/api/v1/stats", {"limit": "0"}), ("/api/v1/stats", {"offset": "-1"}),
    ("/api/v1/contracts/{symbol}/stats", {"window": "1h"}),
])
def test_stats_refuse_a_bad_query(path, query):
    symbol = ContractFactory().symbol
    response = APIClient().get(path.format(symbol=symbol), query)
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"


def test_stats_of_an_unknown_contract_are_404():
    assert APIClient().get("/api/v1/contracts/NO-SUCH/stats").status_code == 404
