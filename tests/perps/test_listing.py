"""Listing a perpetual and its mark price at each price update (``ccp.perps.services``)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from ccp.contracts.models import Contract, TradingMode
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.services import SeriesSpec, contract_series_create, contract_trading_mode_set
from ccp.errors import ApplicationError
from ccp.orders.models import Order
from ccp.perps.margin import Tier
from ccp.perps.models import MarkPrice, Perpetual
from ccp.perps.services import perpetual_list, perpetual_marks_update
from ccp.prices.models import SpotPrice, VenueSymbol
from tests.factories import EXPIRY, ClientFactory, ContractFactory, PairFactory

pytestmark = pytest.mark.django_db

TIERS = [Tier(D(10), D("0.005"), D(100)), Tier(None, D("0.01"), D(50))]


def list_btc(now, **overrides):
    pair = PairFactory()
    terms = {"pair": pair, "collateral": pair.quote, "tick_size": D("0.5"), "lot_size": D("0.001"),
             "floor_px": D(1000), "cap_px": D(1000000), "tiers": TIERS, "liquidation_fee_rate": D("0.002"),
             "funding_cap": D("0.0075"), "now": now, **overrides}
    return perpetual_list(**terms)


def test_a_perpetual_has_no_expiry_and_trades_continuously(now):
    contract = list_btc(now)
    assert (contract.symbol, contract.kind, contract.expiry_date) == ("BTC-USDC-PERP", "perpetual", None)
    assert contract.trading_mode == TradingMode.CONTINUOUS and contract.is_perpetual
    assert contract.expires_at is None and not contract.trading_ended(now + timedelta(days=3650))
    perpetual = Perpetual.objects.get(contract=contract)
    assert perpetual.tier_list == TIERS and perpetual.max_leverage == D(100)
    with pytest.raises(ApplicationError) as raised:
        list_btc(now)
    assert raised.value.code == "perpetual_exists"


@pytest.mark.parametrize("overrides", [
    {"tiers": [Tier(None, D("0.01"), D(100))]},  # 100x at 1% + 0.5% fee: liquidatable at open
    {"tiers": [Tier(D(10), D("0.01"), D(50))]},  # no unbounded tier
    {"floor_px": D(10), "cap_px": D(5)},
    {"liquidation_fee_rate": D("0.2"), "tiers": [Tier(None, D("0.01"), D(2))]},
])
def test_bad_terms_are_refused(now, overrides):
    with pytest.raises(ApplicationError) as raised:
        list_btc(now, **overrides)
    assert raised.value.code == "contract_terms_invalid"
    assert not Contract.objects.exists()


def test_the_database_keeps_perpetuals_and_dated_contracts_apart(now):
    with pytest.raises(IntegrityError), transaction.atomic():
        ContractFactory(kind="perpetual", strike_px=None, expiry_date=EXPIRY, trading_mode="continuous")
    with pytest.raises(IntegrityError), transaction.atomic():
        ContractFactory(kind="perpetual", strike_px=None, expiry_date=None, trading_mode="auction",
                        symbol="BTC-USDC-PERP")
    with pytest.raises(IntegrityError), transaction.atomic():
        ContractFactory(kind="future", strike_px=None, expiry_date=None, symbol="BTC-USDC-X-F")


def test_a_perpetual_stays_continuous_and_is_no_series_kind(now):
    contract = list_btc(now)
    with pytest.raises(ApplicationError) as raised:
        contract_trading_mode_set(contract_id=contract.pk, mode="auction", by="ops", reason="", now=now)
    assert raised.value.code == "perpetual_trades_continuously"
    with pytest.raises(ApplicationError) as raised:
        contract_series_create(spec=SeriesSpec(
            pair=contract.pair, collateral=contract.collateral, expiry_date=EXPIRY, kinds=(ContractKind.PERPETUAL,),
            strikes=(), floor_px=D(1), cap_px=D(2), tick_size=D(1), lot_size=D(1)), now=now)
    assert raised.value.code == "contract_kind_invalid"


def quote(pair, venue, price, at):
    VenueSymbol.objects.get_or_create(pair=pair, venue=venue, defaults={"symbol": "BTC/USDT"})
    SpotPrice.objects.create(pair=pair, source=venue, price=D(price), observed_at=at, fetched_at=at)


def rest(contract, side, price, client):
    Order.objects.create(client=client, contract=contract, client_order_id=f"{side}-{price}", side=side,
                         price=D(price), quantity=D(1), state="accepted", created_at=contract.created_at,
                         updated_at=contract.created_at)


def test_the_mark_is_the_index_plus_a_damped_bounded_basis(now):
    contract = list_btc(now)
    quote(contract.pair, "binance", "50000", now)
    quote(contract.pair, "coinbase", "50010", now)
    quote(contract.pair, "gemini", "50100", now)  # median of three: 50,010
    client = ClientFactory()
    rest(contract, "buy", "50100", client)
    rest(contract, "sell", "50200", client)  # mid 50,150: the book's basis is 140

    first = perpetual_marks_update(now=now)
    assert [(m.index_px, m.basis, m.mark_px) for m in first] == [(D(50010), D(28), D(50038))]  # 0.2 of 140
    assert perpetual_marks_update(now=now) == []  # the same update again stores nothing

    later = now + timedelta(seconds=30)
    quote(contract.pair, "binance", "50000", later)
    quote(contract.pair, "coinbase", "50000", later)
    [second] = perpetual_marks_update(now=later)
    assert (second.index_px, second.basis) == (D(50000), D("52.4"))  # 28 + 0.2 * (150 - 28)
    assert second.mark_px == D("50052.5")  # 50,052.4 to the 0.5 tick

    stale = later + timedelta(minutes=10)
    assert perpetual_marks_update(now=stale) == []
    perpetual = Perpetual.objects.get(contract=contract)
    assert (perpetual.mark_px, perpetual.index_px, perpetual.marked_at) == (None, None, stale)
    assert MarkPrice.objects.filter(contract=contract).count() == 2


def test_the_basis_is_bounded_by_a_share_of_the_index(now):
    contract = list_btc(now)
    quote(contract.pair, "binance", "50000", now)
    client = ClientFactory()
    rest(contract, "buy", "59000", client)
    rest(contract, "sell", "61000", client)  # the book 20% above the index
    Perpetual.objects.filter(contract=contract).update(basis_alpha=D(1))
    [mark] = perpetual_marks_update(now=now)
    assert (mark.basis, mark.mark_px) == (D(250), D(50250))  # bounded at 0.5% of 50,000


def test_the_contract_api_shows_a_perpetual_and_its_terms(now):
    contract = list_btc(now)
    body = APIClient().get(f"/api/v1/contracts/{contract.symbol}").json()
    assert (body["kind"], body["expiry_date"], body["expires_at"], body["trading_ends_at"]) == (
        "perpetual", None, None, None)
    assert body["perpetual"] == {"max_leverage": "100", "liquidation_fee_rate": "0.002", "funding_cap": "0.0075",
                                 "tiers": [{"up_to": "10", "rate": "0.005", "max_leverage": "100"},
                                           {"up_to": None, "rate": "0.01", "max_leverage": "50"}]}
    listed = APIClient().get("/api/v1/contracts").json()
    assert [c["symbol"] for c in listed["results"]] == ["BTC-USDC-PERP"]


def test_orders_on_a_perpetual_are_refused_while_operators_close_margin_trading(now, api_as, settings):
    settings.CCP_PERPETUALS_OPEN = False
    contract = list_btc(now)
    client = ClientFactory()
    answer = api_as(client).post("/api/v1/orders", {"client_order_id": "p1", "contract": contract.symbol,
                                                    "side": "buy", "price": "50000", "quantity": "0.01"},
                                 format="json")
    assert (answer.status_code, answer.json()["code"]) == (400, "contract_not_tradeable")
    assert not Order.objects.exists()
