from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from ccp.contracts.models import Contract
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.services import SeriesSpec, contract_series_create
from ccp.errors import ApplicationError
from tests.factories import CurrencyFactory, PairFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec() -> SeriesSpec:
    pair = PairFactory()
    return SeriesSpec(
        pair=pair, collateral=pair.quote, expiry_date=date(2026, 12, 25),
        kinds=(ContractKind.CALL, ContractKind.PUT, ContractKind.FUTURE),
        strikes=(Decimal("90000"), Decimal("100000")), floor_px=Decimal("50000"), cap_px=Decimal("150000"),
        tick_size=Decimal("1"), lot_size=Decimal("0.01"),
    )


def test_a_series_lists_each_kind_and_strike_once(spec, now):
    created = contract_series_create(spec=spec, now=now)
    assert sorted(c.symbol for c in created) == [
        "BTC-USDC-20261225-100000-C", "BTC-USDC-20261225-100000-P",
        "BTC-USDC-20261225-90000-C", "BTC-USDC-20261225-90000-P", "BTC-USDC-20261225-F",
    ]
    future = Contract.objects.get(kind="future")
    assert future.strike_px is None and future.state == "listed"
    assert future.expires_at.isoformat() == "2026-12-25T12:00:00+00:00"


def test_listing_the_same_series_twice_adds_only_what_is_new(spec, now):
    contract_series_create(spec=spec, now=now)
    again = contract_series_create(spec=replace(spec, strikes=(*spec.strikes, Decimal("110000"))), now=now)
    assert sorted(c.symbol for c in again) == ["BTC-USDC-20261225-110000-C", "BTC-USDC-20261225-110000-P"]
    assert Contract.objects.count() == 7


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"strikes": (Decimal("40000"),)}, "contract_terms_invalid"),
        ({"strikes": (Decimal("100000.5"),)}, "contract_strike_off_tick"),
        ({"cap_px": Decimal("40000")}, "contract_terms_invalid"),
        ({"strikes": ()}, "contract_strike_missing"),
        ({"kinds": ()}, "contract_kind_missing"),
        ({"expiry_date": date(2026, 11, 21)}, "contract_expiry_in_past"),
        ({"tick_size": Decimal("0")}, "contract_grid_invalid"),
    ],
)
def test_bad_series_are_refused_whole(spec, now, change, code):
    with pytest.raises(ApplicationError) as err:
        contract_series_create(spec=replace(spec, **change), now=now)
    assert err.value.code == code
    assert not Contract.objects.exists()


def test_collateral_must_be_the_quote_currency(spec, now):
    with pytest.raises(ApplicationError) as err:
        contract_series_create(spec=replace(spec, collateral=CurrencyFactory(symbol="ETH")), now=now)
    assert err.value.code == "contract_collateral_not_quote"
