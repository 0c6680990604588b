"""CCP_AUCTION_MIP_GAP: HiGHS' default gap unless set; a value the auction's promise cannot keep stops the process."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest

from ccp.matching.auction import AuctionSettings, input_from_document
from ccp.matching.tasks import auction_settings


def _settings_with(gap: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CCP_AUCTION_MIP_GAP": gap}
    return subprocess.run([sys.executable, "-c", "import ccp.settings as s; print(s.CCP_AUCTION_MIP_GAP)"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_the_live_auctions_and_a_document_without_the_key_use_highs_default_gap():
    assert auction_settings().mip_rel_gap == AuctionSettings().mip_rel_gap == Decimal("0.0001")
    document = {"format": "ccp-auction-input/1", "auction": "a", "settings": {}, "contracts": [], "clients": [],
                "orders": []}
    assert input_from_document(document).settings.mip_rel_gap == Decimal("0.0001")


@pytest.mark.parametrize("gap", ["0", "0.001", "0.0049"])
def test_a_gap_from_zero_below_half_a_percent_is_taken(gap):
    done = _settings_with(gap)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == gap


@pytest.mark.parametrize("gap", ["0.005", "0.5", "-0.0001", "abc", "nan", "inf", ""])
def test_any_other_gap_stops_the_process_with_a_message(gap):
    done = _settings_with(gap)
    assert done.returncode != 0
    assert "CCP_AUCTION_MIP_GAP must be a number from 0" in done.stderr
