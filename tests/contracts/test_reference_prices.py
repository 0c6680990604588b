from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from ccp.errors import ApplicationError
from ccp.prices.models import ReferencePrice
from ccp.prices.services import reference_price_initial_set
from tests.factories import ContractFactory

pytestmark = pytest.mark.django_db


def reference_in_api(contract):
    return APIClient().get(f"/api/v1/contracts/{contract.symbol}").json()["reference_price"]


def test_the_api_shows_the_initial_price_then_the_last_clearing_price(now):
    contract = ContractFactory()
    assert reference_in_api(contract) is None
    reference_price_initial_set(contract=contract, price=D("2400"), now=now)
    assert reference_in_api(contract) == "2400"
    ReferencePrice.objects.create(contract=contract, kind="clearing", price=D("2450"), at=now, auction_ref="auction-1")
    assert reference_in_api(contract) == "2450"
    listed = APIClient().get("/api/v1/contracts").json()["results"]
    assert listed[0]["reference_price"] == "2450"


@pytest.mark.parametrize(("price", "code"), [("2400.5", "price_off_tick"), ("60000", "price_out_of_bounds")])
def test_a_bad_initial_price_is_refused(now, price, code):
    with pytest.raises(ApplicationError) as err:
        reference_price_initial_set(contract=ContractFactory(), price=D(price), now=now)
    assert err.value.code == code and not ReferencePrice.objects.exists()


def test_operators_set_an_initial_price_once_in_the_admin(admin_client):
    contract = ContractFactory()
    page = admin_client.post("/admin/prices/referenceprice/add/", {"contract": contract.pk, "price": "2400"})
    assert page.status_code == 302
    again = admin_client.post("/admin/prices/referenceprice/add/", {"contract": contract.pk, "price": "2500"})
    assert again.status_code == 200 and "initial_price_exists" in again.content.decode()
    assert list(ReferencePrice.objects.values_list("kind", "price")) == [("initial", D("2400"))]
