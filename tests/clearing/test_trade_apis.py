"""GET /fills (private, your side of each trade) and GET /contracts/<symbol>/trades (public): isolation,
newest first, cursor pagination, filters, strict query strings; an order's detail shows its fills."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.clearing.services import Execution, trades_book
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger():
    """On contract A alice buys from bob five times (one minute apart) and carol buys from bob once;
    on contract B alice trades with herself once (after the rest)."""
    a, b = ContractFactory(), ContractFactory(strike_px=D("110000"))
    alice, bob, carol = ClientFactory(), ClientFactory(), ClientFactory()
    alice_buy = ReceivedOrderFactory(client=alice, contract=a, side="buy", quantity=D("10"))
    bob_sell = ReceivedOrderFactory(client=bob, contract=a, side="sell", quantity=D("10"))
    carol_buy = ReceivedOrderFactory(client=carol, contract=a, side="buy")
    for minute in range(5):
        trades_book(venue="auction", venue_ref=f"auction-{minute}", now=NOW + timedelta(minutes=minute), executions=[
            Execution(a.pk, D(2000 + minute), D("0.5"), alice_buy.pk, alice.pk, bob_sell.pk, bob.pk)])
    trades_book(venue="auction", venue_ref="auction-9", now=NOW + timedelta(minutes=9), executions=[
        Execution(a.pk, D("2010"), D("0.1"), carol_buy.pk, carol.pk, bob_sell.pk, bob.pk)])
    self_buy = ReceivedOrderFactory(client=alice, contract=b, side="buy")
    self_sell = ReceivedOrderFactory(client=alice, contract=b, side="sell")
    trades_book(venue="auction", venue_ref="auction-10", now=NOW + timedelta(minutes=10), executions=[
        Execution(b.pk, D("300"), D("1"), self_buy.pk, alice.pk, self_sell.pk, alice.pk)])
    return {"a": a, "b": b, "alice": alice, "bob": bob, "carol": carol, "alice_buy": alice_buy}


def all_pages(api, url, limit) -> list[dict]:
    results, cursor = [], None
    while True:
        page = api.get(url, {"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.json()
        body = page.json()
        assert len(body["results"]) <= limit
        results += body["results"]
        cursor = body["next_cursor"]
        if cursor is None:
            return results


def test_a_trader_sees_only_their_side_of_their_trades_newest_first(api_as, ledger):
    # when alice pages through her fills two at a time
    fills = all_pages(api_as(ledger["alice"]), "/api/v1/fills", 2)
    # then she sees her five buys on A and both sides of her self-trade on B, newest first, nothing of carol's
    assert [(f["contract"], f["side"], f["price"]) for f in fills] == [
        (ledger["b"].symbol, "buy", "300"), (ledger["b"].symbol, "sell", "300"),
        *[(ledger["a"].symbol, "buy", str(2000 + m)) for m in reversed(range(5))]]
    assert [f["trade_id"] for f in fills] == sorted((f["trade_id"] for f in fills), reverse=True)
    first = fills[2]
    assert first == {"trade_id": first["trade_id"], "order_id": ledger["alice_buy"].pk,
                     "contract": ledger["a"].symbol, "side": "buy", "price": "2004", "quantity": "0.5",
                     "executed_at": "2026-11-21T09:34:00Z", "venue": "auction", "venue_ref": "auction-4"}
    # bob sees his six sells (alice's five and carol's one); carol only her one buy
    assert [f["side"] for f in all_pages(api_as(ledger["bob"]), "/api/v1/fills", 4)] == ["sell"] * 6
    carol = api_as(ledger["carol"]).get("/api/v1/fills").json()
    assert [(f["side"], f["quantity"], f["venue_ref"]) for f in carol["results"]] == [("buy", "0.1", "auction-9")]
    assert carol["next_cursor"] is None


def test_fills_filter_by_contract_order_and_since(api_as, ledger):
    api = api_as(ledger["alice"])
    by_contract = api.get("/api/v1/fills", {"contract": ledger["b"].symbol}).json()["results"]
    assert [f["side"] for f in by_contract] == ["buy", "sell"]
    by_order = api.get("/api/v1/fills", {"order": ledger["alice_buy"].pk}).json()["results"]
    assert len(by_order) == 5 and {f["order_id"] for f in by_order} == {ledger["alice_buy"].pk}
    since = api.get("/api/v1/fills", {"since": "2026-11-21T09:33:00Z"}).json()["results"]
    assert [f["venue_ref"] for f in since] == ["auction-10", "auction-10", "auction-4", "auction-3"]
    # another trader's order filters to nothing, not to their fills
    assert api_as(ledger["carol"]).get("/api/v1/fills", {"order": ledger["alice_buy"].pk}).json()["results"] == []
    assert api.get("/api/v1/fills", {"contract": "NO-SUCH"}).json()["results"] == []


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "1001"}, {"limit": "1.0"}, {"limit": ""}, {"cursor": "12"}, {"cursor": "x.buy"},
    {"cursor": ""}, {"since": "yesterday"}, {"since": ""}, {"order": "-1"}, {"order": "1e3"}, {"contract": ""},
    {"sort": "id"}, {"offset": "1"},
])
def test_bad_fill_queries_are_refused(api_as, ledger, query):
    response = api_as(ledger["alice"]).get("/api/v1/fills", query)
    assert response.status_code == 400 and response.json()["code"] in {"invalid_input", "invalid_number"}


def test_fills_need_a_signed_in_trader(ledger):
    assert APIClient().get("/api/v1/fills").status_code == 401


def test_public_trades_page_by_sequence(ledger):
    api = APIClient()
    trades = all_pages(api, f"/api/v1/contracts/{ledger['a'].symbol}/trades", 4)
    assert [t["sequence"] for t in trades] == [6, 5, 4, 3, 2, 1]
    assert trades[0] == {"id": trades[0]["id"], "sequence": 6, "price": "2010", "quantity": "0.1",
                         "aggressor_side": None, "executed_at": "2026-11-21T09:39:00Z", "venue": "auction",
                         "venue_ref": "auction-9"}
    assert "client" not in str(trades) and "order" not in str(trades)
    assert [t["sequence"] for t in all_pages(api, f"/api/v1/contracts/{ledger['b'].symbol}/trades", 4)] == [1]
    for query in ({"cursor": "x"}, {"cursor": ""}, {"limit": "0"}, {"since": "2026-11-21T09:33:00Z"}):
        response = api.get(f"/api/v1/contracts/{ledger['a'].symbol}/trades", query)
        assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert api.get("/api/v1/contracts/NO-SUCH/trades").status_code == 404


def test_an_order_shows_its_fills_and_average_price(api_as, ledger):
    detail = api_as(ledger["alice"]).get(f"/api/v1/orders/{ledger['alice_buy'].pk}").json()
    assert [(f["price"], f["quantity"], f["side"]) for f in detail["fills"]] == [
        (str(2000 + m), "0.5", "buy") for m in range(5)]
    assert "average_fill_price" in detail and "last_fill_at" in detail


def test_the_webconsole_lists_trades_by_venue_and_client(admin_client, ledger):
    listing = admin_client.get("/admin/clearing/trade/", {"venue__exact": "auction"})
    assert listing.status_code == 200 and listing.content.decode().count("auction-") >= 7
    carol = admin_client.get("/admin/clearing/trade/", {"q": ledger["carol"].address}).content.decode()
    assert "auction-9" in carol and "auction-4" not in carol
    assert "2010.000000000000000000" not in carol  # prices without trailing zeros
    by_contract = admin_client.get("/admin/clearing/trade/", {"contract__id__exact": ledger["b"].pk})
    assert by_contract.status_code == 200 and "auction-10" in by_contract.content.decode()
    assert admin_client.get(f"/admin/clearing/trade/{ledger['alice_buy'].buy_trades.first().pk}/change/"
                            ).status_code == 200
