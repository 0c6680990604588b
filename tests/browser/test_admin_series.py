"""An operator signs in to the admin in a real browser and lists contracts through the series form."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from ccp.contracts.models import Contract
from tests.factories import PairFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "operator-password-1"
SCREENSHOT = "/tmp/ccp-admin-series.png"
# The form checks the expiry against the real clock (utcnow), so pick a date well after today.
EXPIRY = datetime.now(UTC).date() + timedelta(days=400)


@pytest.fixture
def pair():
    return PairFactory()  # BTC/USDC


@pytest.fixture
def series_page(driver, live_server, pair):
    """Sign in through the login form, open Contracts, click "Add contract"; return the driver on the form."""
    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    wait = WebDriverWait(driver, 10)
    driver.get(f"{live_server.url}/admin/")
    driver.find_element(By.NAME, "username").send_keys("operator")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait.until(EC.title_contains("Operations"))

    driver.find_element(By.CSS_SELECTOR, "#content-main a[href='/admin/contracts/contract/']").click()
    wait.until(EC.url_to_be(f"{live_server.url}/admin/contracts/contract/"))
    add = driver.find_element(By.CSS_SELECTOR, ".object-tools a.addlink")  # the admin CSS upper-cases its text
    assert add.text.casefold() == "add contract"
    add.click()
    wait.until(EC.url_to_be(f"{live_server.url}/admin/contracts/contract/series/"))
    return driver


def fill_series(driver, *, kinds, strikes, floor, cap, tick="1", lot="0.01"):
    Select(driver.find_element(By.NAME, "pair")).select_by_visible_text("BTC/USDC")
    Select(driver.find_element(By.NAME, "collateral")).select_by_visible_text("USDC")
    # Typed text in a type=date input depends on the browser locale; the value property does not.
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.NAME, "expiry_date"),
                          EXPIRY.isoformat())
    for box in driver.find_elements(By.NAME, "kinds"):
        if box.is_selected() != (box.get_attribute("value") in kinds):
            box.click()
    for name, value in [("strikes", strikes), ("floor_px", floor), ("cap_px", cap), ("tick_size", tick),
                        ("lot_size", lot)]:
        field = driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


def test_operator_lists_a_call_and_a_future(series_page, live_server, pair):
    driver = series_page
    fill_series(driver, kinds={"call", "future"}, strikes="100000", floor="50000", cap="150000")
    driver.find_element(By.NAME, "_list").click()
    WebDriverWait(driver, 10).until(EC.url_to_be(f"{live_server.url}/admin/contracts/contract/"))
    driver.save_screenshot(SCREENSHOT)

    day = EXPIRY.strftime("%Y%m%d")
    call, future = f"BTC-USDC-{day}-100000-C", f"BTC-USDC-{day}-F"
    message = driver.find_element(By.CSS_SELECTOR, ".messagelist .success").text
    assert message == f"Listed 2 contract(s): {call}, {future}"
    listed = {th.text for th in driver.find_elements(By.CSS_SELECTOR, "#result_list tbody th")}
    assert {call, future} <= listed

    contracts = {c.symbol: c for c in Contract.objects.all()}
    assert set(contracts) == {call, future}
    for contract in contracts.values():
        assert (contract.pair, contract.collateral, contract.expiry_date, contract.state) == (
            pair, pair.quote, EXPIRY, "listed")
        assert (contract.floor_px, contract.cap_px, contract.tick_size, contract.lot_size) == (
            Decimal("50000"), Decimal("150000"), Decimal("1"), Decimal("0.01"))
    assert (contracts[call].kind, contracts[call].strike_px) == ("call", Decimal("100000"))
    assert (contracts[future].kind, contracts[future].strike_px) == ("future", None)


def test_strike_outside_bounds_shows_the_error_and_lists_nothing(series_page, live_server):
    driver = series_page
    fill_series(driver, kinds={"call"}, strikes="200000", floor="50000", cap="150000")
    driver.find_element(By.NAME, "_list").click()

    error = WebDriverWait(driver, 10).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".errornote")))
    assert "strike 200000 must lie within [floor, cap]" in error.text
    assert "contract_terms_invalid" in error.text
    assert driver.current_url == f"{live_server.url}/admin/contracts/contract/series/"
    assert not Contract.objects.exists()
