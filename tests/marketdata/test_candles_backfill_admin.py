"""Candles of trades booked before candles were kept (the migration's backfill), a rolled-back booking
leaves no candle, and the webconsole's read-only candle list."""

import importlib
from decimal import Decimal as D

import pytest
from django.apps import apps
from django.db import transaction

from ccp.clearing.models import Trade
from ccp.marketdata.candles import bars_of
from ccp.marketdata.models import Candle
from tests.conftest import NOW
from tests.factories import ContractFactory
from tests.marketdata.conftest import book

pytestmark = pytest.mark.django_db


def stored() -> dict:
    return {(c.contract_id, c.interval, c.bucket_start): (c.open, c.high, c.low, c.close, c.volume, c.trade_count,
                                                          c.first_sequence, c.last_sequence)
            for c in Candle.objects.all()}


def test_the_migration_backfills_the_candles_of_earlier_trades():
    # given trades on two contracts and no candles (as before the migration)
    a, b = ContractFactory(), ContractFactory(strike_px=D("110000"))
    book(a, [("100", "1"), ("90", "2")], at=NOW, ref="auction-1")
    book(a, [("95", "1")], at=NOW.replace(hour=11), ref="auction-2")
    book(b, [("7", "3")], at=NOW, ref="auction-3")
    expected = stored()
    Candle.objects.all().delete()
    # when the backfill runs
    migration = importlib.import_module("ccp.marketdata.migrations.0001_initial")
    migration.candles_backfill(apps, None)
    # then the candles are those of every trade, as booking made them
    assert stored() == expected
    trades = Trade.objects.values("contract_id", "sequence", "price", "quantity", "executed_at")
    assert expected == {key: (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.first_sequence,
                              b.last_sequence) for key, b in bars_of(trades).items()}


def test_a_rolled_back_booking_leaves_no_candle():
    contract = ContractFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        book(contract, [("100", "1")], at=NOW, ref="auction-1")
        raise RuntimeError("the auction's apply failed after booking")
    assert not Candle.objects.filter(contract=contract).exists()


def test_the_webconsole_lists_candles_read_only_with_plain_prices(admin_client):
    contract = ContractFactory()
    book(contract, [("100.5", "1")], at=NOW, ref="auction-1")
    listing = admin_client.get("/admin/marketdata/candle/", {"interval__exact": "1m"})
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "100.5" in page and "100.500000000000000000" not in page
    candle = Candle.objects.get(contract=contract, interval="1m")
    assert admin_client.get(f"/admin/marketdata/candle/{candle.pk}/change/").status_code == 200
    assert admin_client.get("/admin/marketdata/candle/add/").status_code == 403
