"""Operators list a perpetual from the webconsole and watch its marks."""

from decimal import Decimal as D

import pytest
from django.urls import reverse

from ccp.contracts.models import Contract
from ccp.perps.models import Perpetual
from tests.factories import PairFactory

pytestmark = pytest.mark.django_db

TIERS = ('[{"up_to": "10", "rate": "0.005", "max_leverage": "100"}, '
         '{"up_to": null, "rate": "0.01", "max_leverage": "50"}]')


def form(pair, **overrides):
    return {"pair": pair.pk, "collateral": pair.quote.pk, "floor_px": "1000", "cap_px": "1000000", "tick_size": "0.5",
            "lot_size": "0.001", "tiers": TIERS, "liquidation_fee_rate": "0.002", "funding_cap": "0.0075",
            **overrides}


def test_list_a_perpetual_then_see_it(admin_client):
    pair = PairFactory()
    url = reverse("admin:perps_perpetual_list")
    assert admin_client.get(reverse("admin:perps_perpetual_add")).url == url
    page = admin_client.post(url, form(pair), follow=True)
    assert b"Listed BTC-USDC-PERP" in page.content
    perpetual = Perpetual.objects.get(contract__symbol="BTC-USDC-PERP")
    assert perpetual.max_leverage == D(100) and perpetual.contract.trading_mode == "continuous"
    assert admin_client.get(reverse("admin:perps_perpetual_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:perps_markprice_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:perps_liquidation_changelist")).status_code == 200


@pytest.mark.parametrize("tiers, says", [
    ("not json", b"Tiers must be a JSON list"),
    ('[{"up_to": null, "rate": "0.01", "max_leverage": "100"}]', b"contract_terms_invalid"),
])
def test_bad_tiers_are_explained_and_list_nothing(admin_client, tiers, says):
    page = admin_client.post(reverse("admin:perps_perpetual_list"), form(PairFactory(), tiers=tiers))
    assert page.status_code == 200 and says in page.content
    assert not Contract.objects.exists()
