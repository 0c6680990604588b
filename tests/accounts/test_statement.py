"""A client's statement: deposits and cash movements by kind add up to the balance (issue 11)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from ccp.accounts.models import FundLock
from ccp.clock import utcnow
from ccp.settlement.models import Deposit
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, FundLockFactory
from tests.matching.test_auction_flow import chains_started, place, run_auction  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def deposited(client, currency, amount: str, n: int) -> None:
    """A deposit as the chain monitor credits it: the log's row and the fund lock's fundlock."""
    Deposit.objects.create(client=client, currency=currency, amount=D(amount), tx_hash=f"0x{n:064x}", log_index=0,
                           block_number=n, block_hash=f"0x{n:064x}", recorded_at=NOW - timedelta(hours=1))
    FundLock.objects.filter(client=client, currency=currency).update(fundlock=D(amount))


def test_deposits_trades_and_a_withdrawal_add_up_to_the_balance(api_as):
    # given two clients who deposited, traded a call in an auction, and one withdrew
    contract = ContractFactory()
    usdc = contract.collateral
    usdc.token_address = "0x" + "ab" * 20
    usdc.save()
    buyer, seller = (FundLockFactory(currency=usdc, fundlock=D(0)).client for _ in range(2))
    deposited(buyer, usdc, "5000", 1)
    deposited(seller, usdc, "60000", 2)
    place(buyer, contract, "buy", "2100", "0.5")
    place(seller, contract, "sell", "2000", "0.5")
    run_auction()
    withdrawal_request(client=buyer, ask=WithdrawalAsk(client_withdrawal_id="w-1", currency=usdc, amount=D("100")),
                       now=utcnow())  # after the auction's stages, which ran by the real clock
    # when the buyer reads the statement
    api = api_as(buyer)
    (totals,) = api.get("/api/v1/statement").json()
    # then each kind is there and they sum to the balance, nothing unexplained
    balance = FundLock.objects.get(client=buyer, currency=usdc)
    paid = D(totals["auction"])
    assert paid < 0 and totals["deposit"] == "5000" and totals["withdrawal"] == "-100"
    assert D(totals["total"]) == D(5000) + paid - D(100) == balance.fundlock + balance.settle_value
    assert totals["balance"] == totals["total"] and totals["unrecorded"] == "0"
    # and the lines, newest first, are the same movements
    lines = api.get("/api/v1/statement/lines?currency=USDC").json()
    assert [line["kind"] for line in lines["results"]] == ["withdrawal", "auction", "deposit"]
    assert sum(D(line["amount"]) for line in lines["results"]) == D(totals["total"])
    assert lines["results"][1]["contract"] == contract.symbol and lines["results"][1]["position_delta"] == "0.5"
    # the seller's statement is its own
    (seller_totals,) = api_as(seller).get("/api/v1/statement").json()
    assert D(seller_totals["auction"]) == -paid and seller_totals["unrecorded"] == "0"


def test_credit_outside_the_chain_monitor_shows_as_unrecorded(api_as):
    fund = FundLockFactory(fundlock=D("1000"))
    (totals,) = api_as(fund.client).get("/api/v1/statement").json()
    assert (totals["total"], totals["balance"], totals["unrecorded"]) == ("0", "1000", "1000")


def test_nobody_sees_another_clients_lines_and_the_currency_is_required(api_as):
    fund = FundLockFactory(fundlock=D(0))
    deposited(fund.client, fund.currency, "10", 3)
    stranger = api_as(ClientFactory())
    assert stranger.get("/api/v1/statement").json() == []
    assert stranger.get("/api/v1/statement/lines?currency=USDC").json()["results"] == []
    for query in ("", "?currency=", "?currency=usdc", "?currency=USDC&x=1"):
        response = stranger.get(f"/api/v1/statement/lines{query}")
        assert response.status_code == 400 and response.json()["code"] == "invalid_input"
