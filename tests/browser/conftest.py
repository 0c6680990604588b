"""Headless Chromium from Debian (bin/test installs chromium and chromium-driver when missing)."""

import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000", "--lang=en-US",
]


@pytest.fixture
def driver():
    """A fresh browser per test; explicit paths so Selenium Manager never downloads anything."""
    with tempfile.TemporaryDirectory(prefix="ccp-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        browser.set_page_load_timeout(30)
        browser.implicitly_wait(5)
        try:
            yield browser
        finally:
            browser.quit()
