"""The liquidation waterfall after the book (``perpetual_liquidations_enter``): the liquidation fee to the insurance
fund, the fund's takeover at the bankruptcy price of what the book cannot take, ADL when the fund cannot afford
it all, the fund unwinding on the book; every step recorded and pushed, every invariant holding, a second run
changing nothing. Numbers worked by hand in the comments (tick 0.5, lot 0.001, maintenance 0.5% up to 10 BTC
at up to 100x, liquidation fee 0.2%)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse

from ccp.accounts.selectors import statement_totals
from ccp.accounts.services import fund_lock_credit
from ccp.clearing.models import Trade
from ccp.orders.models import Order
from ccp.perps.fund import insurance_fund_client, insurance_fund_locks
from ccp.perps.models import Liquidation
from ccp.perps.services import perpetual_liquidations_enter, perpetual_marks_update
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from ccp.streams import client_group
from ccp.system.invariants import invariants_check
from tests.book.test_venue import match, send, state, trader
from tests.perps import test_trading
from tests.perps.test_listing import quote
from tests.perps.test_trading import balance, position

perp = test_trading.perp  # the fixture: a listed perpetual open to orders
pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    """What the streams send after commit, in order."""
    messages: list[tuple[str, dict]] = []
    monkeypatch.setattr("ccp.streams._send", messages.extend)
    return messages


def liquidation_events(sent, client) -> list[dict]:
    """The ``liquidation`` events of the client's private messages from the liquidation engine."""
    return [event["liquidation"] for group, message in sent if group == client_group(client.pk)
            and message["event"]["type"] == "liquidation" for event in message["event"]["events"]
            if event["type"] == "liquidation"]


def funded(contract, amount, now):
    fund = insurance_fund_client(now=now)
    fund_lock_credit(client=fund, currency=contract.collateral, amount=D(amount), now=now)
    return fund


def long_alice(contract, *shorts):
    """Alice: 0.1 long at 50,000, isolated at 10x (margin 500, bankruptcy 45,000), against ``shorts``
    ((client, quantity, leverage, mode))."""
    alice = trader(contract, "10000")
    for client, quantity, leverage, mode in shorts:
        send(client, contract, "sell", "50000", quantity, leverage=D(leverage), margin_mode=mode)
    send(alice, contract, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(contract)
    assert position(alice, contract)[:1] == (D("0.1"),) and position(alice, contract)[4] == D(500)
    return alice


def mark_at(contract, price, at, time_machine):
    time_machine.move_to(at)
    quote(contract.pair, "binance", price, at)
    perpetual_marks_update(now=at)  # an empty book: the mark is the index


def journal():
    """What a second run must not change."""
    return (Trade.objects.count(), CashMovement.objects.count(), Liquidation.objects.count(), Order.objects.count(),
            sorted(Position.objects.values_list("client_id", "quantity", "margin")))


def assert_balanced():
    assert sum(CashMovement.objects.values_list("amount", flat=True)) == 0
    assert sum(Position.objects.values_list("quantity", flat=True)) == 0
    report = invariants_check()
    assert report.ok, report.violations


def test_a_liquidation_fill_pays_the_fee_to_the_insurance_fund_out_of_the_margin(perp, now, time_machine, sent,
                                                                                  django_capture_on_commit_callbacks):
    bob, carol = trader(perp, "10000"), trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    send(carol, perp, "buy", "45400", "0.2", leverage=D(2), margin_mode="cross")
    match(perp)
    mark_at(perp, "45300", now, time_machine)  # equity 30 <= 31.71: an order for 0.046 at 45,000 or better
    available = balance(alice, perp)[1]
    with django_capture_on_commit_callbacks(execute=True):
        [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    assert (step.kind, step.size, step.bankruptcy_px, step.fee) == ("order", D("0.046"), D(45000), D(0))
    [event] = liquidation_events(sent, alice)
    assert (event["step"], event["role"], event["size"], event["price"], event["order_id"]) == (
        "order", "liquidated", "0.046", "45000", step.order_id)

    match(perp)  # 0.046 sold to Carol at 45,400: the fee 0.002 x 0.046 x 45,400 = 4.1768
    fund = insurance_fund_client(now=now)
    fees = dict(CashMovement.objects.filter(origin="liquidation_fee").values_list("client_id", "amount"))
    assert fees == {alice.pk: D("-4.1768"), fund.pk: D("4.1768")}
    assert Liquidation.objects.get(pk=step.pk).fee == D("4.1768")
    assert balance(alice, perp)[1] == available  # out of the margin: 500 - 211.6 - 4.1768
    assert position(alice, perp)[4] == D("284.2232")
    assert balance(fund, perp) == (D(0), D("4.1768"))
    [totals] = statement_totals(client=alice)
    assert totals["liquidation_fee"] == D("-4.1768")
    assert_balanced()


def test_a_gap_through_the_bankruptcy_price_is_taken_over_by_the_fund(perp, now, time_machine, sent,
                                                                      django_capture_on_commit_callbacks):
    bob = trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    fund = funded(perp, "10000", now)
    mark_at(perp, "44000", now, time_machine)  # equity 500 - 600 = -100: past the bankruptcy price, book empty
    with django_capture_on_commit_callbacks(execute=True):
        [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    # The fund takes all 0.1 at 45,000: margin 0.1 x 45,000 / 100 = 45, loss at the mark 0.1 x 1,000 = 100.
    assert (step.kind, step.counterparty_id, step.size, step.bankruptcy_px, step.equity, step.fee) == (
        "takeover", fund.pk, D("0.1"), D(45000), D(-100), D(0))
    [trade] = Trade.objects.filter(venue="liquidation")
    assert (trade.price, trade.quantity, trade.buy_client_id, trade.sell_client_id) == (
        D(45000), D("0.1"), fund.pk, alice.pk)
    assert position(alice, perp)[0] == 0 and balance(alice, perp) == (D(0), D(9500))  # flat, equity 0 at 45,000
    fund_position = Position.objects.get(client=fund, contract=perp)
    assert (fund_position.quantity, fund_position.entry_price, fund_position.margin_mode, fund_position.margin) == (
        D("0.1"), D(45000), "cross", D(45))
    assert fund_position.quantity * D(44000) - fund_position.cost == D(-100)  # its loss at the mark
    assert balance(fund, perp)[1] == D(9955)
    [event] = liquidation_events(sent, alice)
    assert (event["step"], event["size"], event["price"], event["equity"]) == ("takeover", "0.1", "45000", "-100")
    assert_balanced()

    # The fund's position goes back to the book: a reduce-only IOC sell for 0.1 at 44,000 x 0.98 = 43,120 or better.
    [unwind] = Order.objects.filter(client=fund, state="received")
    assert (unwind.side, unwind.quantity, unwind.price, unwind.reduce_only, unwind.time_in_force) == (
        "sell", D("0.1"), D(43120), True, "ioc")
    before = journal()
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=now) == []  # a second run changes nothing
    assert journal() == before


def test_the_fund_unwinds_its_position_on_the_book(perp, now, time_machine):
    bob, carol = trader(perp, "10000"), trader(perp, "10000")
    long_alice(perp, (bob, "0.1", 5, "cross"))
    fund = funded(perp, "10000", now)
    send(carol, perp, "buy", "44000", "0.1", leverage=D(5), margin_mode="cross")
    match(perp)
    mark_at(perp, "44000", now, time_machine)  # past the bankruptcy price: taken over whatever the book holds
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)  # and the fund's unwind order entered
    assert step.kind == "takeover"
    match(perp)  # the unwind sells 0.1 to Carol at 44,000: the fund realises 0.1 x (44,000 - 45,000)
    assert position(fund, perp)[0] == 0 and position(fund, perp)[5] == D(-100)
    assert balance(fund, perp) == (D(0), D(9900))
    assert position(carol, perp)[0] == D("0.1")
    assert_balanced()

    later = now + timedelta(seconds=30)  # flat: no new unwind order
    mark_at(perp, "44000", later, time_machine)
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=later) == []
    assert Order.objects.filter(client=fund).count() == 2  # the takeover's and the unwind


def test_what_the_book_leaves_of_a_liquidation_order_is_taken_over_at_the_next_check(perp, now, time_machine):
    bob, carol = trader(perp, "10000"), trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    fund = funded(perp, "1000", now)
    send(carol, perp, "buy", "45050", "0.01", leverage=D(2), margin_mode="cross")
    match(perp)
    mark_at(perp, "45300", now, time_machine)
    [order_step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)  # 0.046 at 45,000 or better
    match(perp)  # 0.01 to Carol at 45,050, the rest cancelled: margin 500 - 49.5 - fee 0.002 x 450.5 = 449.599
    assert position(alice, perp)[0] == D("0.09") and position(alice, perp)[4] == D("449.599")
    assert Liquidation.objects.get(pk=order_step.pk).fee == D("0.901")
    # Still liquidatable at the same mark: 449.599 - 0.09 x 4,700 = 26.599 <= 0.007 x 0.09 x 45,300 = 28.539. The
    # fund takes the 0.09 left at its bankruptcy price 50,000 - 449.599 / 0.09 = 45,004.455... -> 45,004.5 (up to
    # the tick), where Alice's equity is 0.004: the fee (8.1 at the rate) is capped at it.
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    assert (step.kind, step.size, step.bankruptcy_px, step.equity, step.fee) == (
        "takeover", D("0.09"), D("45004.5"), D("26.599"), D("0.004"))
    assert position(alice, perp)[0] == 0 and balance(alice, perp) == (D(0), D(9500))
    assert position(fund, perp)[:3] == (D("0.09"), D("4050.405"), D("45004.5"))
    assert_balanced()


def test_adl_closes_the_most_profitable_opposite_positions_when_the_fund_runs_dry(perp, now, time_machine, sent,
                                                                                  django_capture_on_commit_callbacks):
    bob, dave = trader(perp, "10000"), trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.06", 5, "cross"), (dave, "0.04", 10, "isolated"))
    fund = funded(perp, "50", now)
    mark_at(perp, "44000", now, time_machine)
    with django_capture_on_commit_callbacks(execute=True):
        steps = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    # The fund affords 50 / (45,000 / 100 + 1,000) = 0.0344... -> 0.034 (margin 15.3 + loss 34 = 49.3 <= 50).
    # ADL ranks the shorts by profit / margin x notional / margin at the mark:
    # Dave 240 / 200 x 1,760 / 200 = 10.56, Bob 360 / 600 x 2,640 / 600 = 2.64: Dave's 0.04 first, then 0.026 of Bob's.
    assert [(s.kind, s.counterparty_id, s.size, s.bankruptcy_px) for s in steps] == [
        ("takeover", fund.pk, D("0.034"), D(45000)), ("adl", dave.pk, D("0.04"), D(45000)),
        ("adl", bob.pk, D("0.026"), D(45000))]
    assert position(alice, perp)[0] == 0 and balance(alice, perp) == (D(0), D(9500))
    assert position(fund, perp)[0] == D("0.034") and balance(fund, perp)[1] == D("34.7")
    assert position(dave, perp)[0] == 0 and balance(dave, perp) == (D(0), D(10200))  # 200 back + 0.04 x 5,000
    assert position(bob, perp)[0] == D("-0.034") and position(bob, perp)[5] == D(130)  # 0.026 x 5,000
    assert sorted(Trade.objects.filter(venue="liquidation").values_list("quantity", "price", "buy_client_id")) == [
        (D("0.026"), D(45000), bob.pk), (D("0.034"), D(45000), fund.pk), (D("0.04"), D(45000), dave.pk)]
    for client, size in ((dave, "0.04"), (bob, "0.026")):
        [event] = liquidation_events(sent, client)
        assert (event["step"], event["role"], event["size"], event["price"], event["contract"]) == (
            "adl", "deleveraged", size, "45000", perp.symbol)
    assert [e["step"] for e in liquidation_events(sent, alice)] == ["takeover", "adl", "adl"]
    assert_balanced()
    before = journal()
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=now) == []
    assert journal() == before


def test_the_insurance_fund_is_created_once_and_never_liquidated(perp, now, time_machine, settings):
    fund = insurance_fund_client(now=now)
    assert fund.address == settings.CCP_INSURANCE_FUND_ADDRESS == "0x00000000000000000000000000000000000f00d1"
    assert insurance_fund_client(now=now) == fund
    [lock] = insurance_fund_locks(currency_ids=[perp.collateral_id], now=now).values()
    assert insurance_fund_locks(currency_ids=[perp.collateral_id], now=now) == {perp.collateral_id: lock}
    # The fund long at 50,000 isolated 10x, the mark far below: it is not a candidate.
    fund_lock_credit(client=fund, currency=perp.collateral, amount=D(10000), now=now)
    bob = trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(fund, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    mark_at(perp, "44000", now, time_machine)
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=now) == []
    assert not Liquidation.objects.exists()


def test_the_webconsole_shows_the_fund_s_balance_movements_and_the_steps(perp, now, time_machine, admin_client):
    bob = trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    funded(perp, "10000", now)
    mark_at(perp, "44000", now, time_machine)
    perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    balances = admin_client.get(reverse("admin:perps_insurancefundbalance_changelist"))
    assert balances.status_code == 200 and b"9955" in balances.content  # 10,000 less the takeover's margin 45
    assert list(balances.context["cl"].result_list.values_list("client__address", flat=True)) == [
        "0x00000000000000000000000000000000000f00d1"]
    movements = admin_client.get(reverse("admin:perps_insurancefundmovement_changelist"))
    # The fund bought 0.1 at 45,000 against the reference price 50,000: -0.1 x (45,000 - 50,000)
    assert [(m.origin, m.amount) for m in movements.context["cl"].result_list] == [("liquidation", D(500))]
    steps = admin_client.get(reverse("admin:perps_liquidation_changelist"), {"kind": "takeover"})
    assert [(s.client_id, s.kind) for s in steps.context["cl"].result_list] == [(alice.pk, "takeover")]


def test_adl_never_reaches_the_fund_and_leaves_open_what_nobody_covers(perp, now, time_machine):
    bob = trader(perp, "10000")
    fund = funded(perp, "300", now)  # short 0.05 at 10x below: 250 of margin, 50 available
    alice = long_alice(perp, (bob, "0.05", 5, "cross"), (fund, "0.05", 10, "cross"))
    assert balance(fund, perp)[1] == D(50)
    mark_at(perp, "44000", now, time_machine)
    steps = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    # The fund's short scores 300 / 250 x 2,200 / 250 = 10.56, Bob's 300 / 500 x 2,200 / 500 = 2.64, but the
    # fund is never deleveraged: it takes 0.034 over (as it affords), Bob's 0.05 is closed, 0.016 stays open.
    assert [(s.kind, s.counterparty_id, s.size) for s in steps] == [
        ("takeover", fund.pk, D("0.034")), ("adl", bob.pk, D("0.05"))]
    assert position(alice, perp)[0] == D("0.016") and position(bob, perp)[0] == 0
    assert position(fund, perp)[0] == D("-0.016")  # its short, less what it took over
    assert_balanced()


def test_a_reduce_only_order_after_a_takeover_finds_the_position_gone(perp, now, time_machine,
                                                                     django_capture_on_commit_callbacks):
    """The takeover closes Alice's long outside the matcher; the matcher's engine, kept in memory since the last
    batch, must not go on believing she is long: her reduce-only sell then reduces nothing (refused), it does not
    open a short against Carol's bid."""
    bob, carol = trader(perp, "10000"), trader(perp, "100000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    with django_capture_on_commit_callbacks(execute=True):
        match(perp)  # the engine kept in memory (as a committed batch keeps it), with Alice long 0.1
    funded(perp, "10000", now)
    mark_at(perp, "44000", now, time_machine)
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=now)
    assert step.kind == "takeover" and position(alice, perp)[0] == 0
    send(carol, perp, "buy", "44000", "0.1", leverage=D(2), margin_mode="cross")
    sell = send(alice, perp, "sell", "44000", "0.1", reduce_only=True, leverage=D(1), margin_mode="isolated")
    match(perp)
    assert state(sell)[0] == "rejected" and state(sell)[2] == "reduce_only_nothing_to_reduce"
    assert position(alice, perp)[0] == 0
    assert_balanced()


def test_a_position_s_stop_ends_when_a_takeover_closes_it(perp, now, time_machine):
    """Alice's stop-loss at 46,000 (on the mark) outlives her position, taken over by the fund when the mark gaps
    to 44,000: the matcher's next batch (its engine rebuilt: the takeover moved the book's version) cancels it,
    reason position_closed, before the mark can fire it; it would close part of any long she opens next."""
    from ccp.perps.models import Perpetual
    from ccp.perps.positions import position_tpsl_set

    bob = trader(perp, "10000")
    alice = long_alice(perp, (bob, "0.1", 5, "cross"))
    funded(perp, "10000", now)
    mark_at(perp, "50000", now, time_machine)
    stop = position_tpsl_set(client=alice, perpetual=Perpetual.objects.get(contract=perp), take_profit=None,
                             stop_loss=D(46000), trigger_source="mark", slippage_bps=500, now=now).stop_loss
    match(perp)
    assert state(stop)[0] == "untriggered"
    later = now + timedelta(seconds=1)
    mark_at(perp, "44000", later, time_machine)
    [step] = perpetual_liquidations_enter(contract_id=perp.pk, now=later)
    assert step.kind == "takeover" and position(alice, perp)[0] == 0
    match(perp)
    stop.refresh_from_db()
    assert (stop.state, stop.history.last().reason, stop.filled_quantity) == ("cancelled", "position_closed", 0)
    assert position(alice, perp)[0] == 0
    assert_balanced()
