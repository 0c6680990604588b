"""Auctions clear only contracts that trade in auctions: a continuous contract's orders are the
continuous book's, even on a pair whose other contracts are auctioned; a pair with only continuous
contracts opens no auction."""

from decimal import Decimal as D

import pytest
import time_machine

from ccp.contracts.models import Contract
from ccp.matching.models import Auction
from ccp.matching.selectors import pairs_with_open_orders
from ccp.matching.tasks import auction_apply_task, auction_close_task, auction_solve_task, auctions_start_task
from ccp.orders.models import Order
from ccp.orders.services import order_validate
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from tests.conftest import NOW
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory
from tests.ledger import assert_books_balance
from tests.matching.test_auction_flow import chains_started  # noqa: F401 - fixture (autouse: chains recorded)

pytestmark = pytest.mark.django_db


def crossing(contract, buyer, seller, bid: str, offer: str) -> list[Order]:
    """A bid above an offer, both accepted."""
    orders = []
    for client, side, price in ((buyer, "buy", bid), (seller, "sell", offer)):
        order = ReceivedOrderFactory(client=client, contract=contract, side=side, price=D(price), quantity=D("1"))
        order_validate(order_id=order.pk, now=NOW)
        order.refresh_from_db()
        assert order.state == "accepted"
        orders.append(order)
    return orders


def continuous(contract) -> None:
    # Straight in the row, not through contract_trading_mode_set (which cancels the open orders): the
    # state a continuous matcher would leave for a moment, crossing orders resting on a continuous contract.
    Contract.objects.filter(pk=contract.pk).update(trading_mode="continuous")


@pytest.fixture
def traders():
    pair_contract = ContractFactory(kind="future", strike_px=None)
    return pair_contract, [FundLockFactory(currency=pair_contract.collateral, fundlock=D("1000000")).client
                           for _ in range(2)]


def test_the_auction_trades_the_auction_contract_and_leaves_the_continuous_one_alone(traders):
    future, (buyer, seller) = traders
    call = ContractFactory(pair=future.pair)
    on_future = crossing(future, buyer, seller, "101000", "99000")
    on_call = crossing(call, buyer, seller, "2100", "1900")
    continuous(future)
    before = {o.pk: (o.state, o.filled_quantity, o.order_value) for o in on_future}

    with time_machine.travel(NOW, tick=False):
        (auction_id,) = auctions_start_task.apply().get()
    for task in (auction_close_task, auction_solve_task, auction_apply_task):
        task.apply(args=[auction_id]).get()

    auction = Auction.objects.get(pk=auction_id)
    assert auction.state == "applied"
    assert set(auction.order_ids) == {o.pk for o in on_call}
    assert list(auction.result_document["prices"]) == [call.symbol]
    assert {o.state for o in Order.objects.filter(pk__in=[o.pk for o in on_call])} == {"filled"}
    assert {o.pk: (o.state, o.filled_quantity, o.order_value)
            for o in Order.objects.filter(pk__in=[o.pk for o in on_future])} == before
    assert not Position.objects.filter(contract=future).exists()
    assert set(CashMovement.objects.filter(origin_ref=auction.ref).values_list("contract_id", flat=True)) == {call.pk}
    assert_books_balance()


def test_a_pair_with_only_continuous_contracts_opens_no_auction(traders):
    future, (buyer, seller) = traders
    crossing(future, buyer, seller, "101000", "99000")
    assert list(pairs_with_open_orders()) == [future.pair]
    continuous(future)

    assert list(pairs_with_open_orders()) == []
    with time_machine.travel(NOW, tick=False):
        assert auctions_start_task.apply().get() == []
    assert not Auction.objects.exists()
