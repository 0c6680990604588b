"""A scripted expiry day with a controlled clock: trade, halt at 00:00, expire at 12:00, settle at 12:10
on the venues' recorded prices for 12:00, and nothing more when the tasks run again."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import requests

from ccp.accounts.models import FundLock
from ccp.contracts.models import Contract
from ccp.contracts.tasks import contracts_lifecycle
from ccp.errors import ApplicationError
from ccp.matching.services import auction_apply, auction_close, auction_open, auction_solve
from ccp.matching.tasks import auction_settings
from ccp.orders.services import OrderRequest, order_submit, order_validate
from ccp.prices.models import SpotPrice, VenueSymbol
from ccp.prices.venues import venue
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement
from ccp.system.models import OperatorAlert
from tests.factories import ContractFactory, FundLockFactory, PairFactory
from tests.prices.replay import Answer, Replay, fixture
from tests.prices.test_venues import CASES

EXPIRY = datetime(2026, 11, 20, tzinfo=UTC).date()
DAY_BEFORE = datetime(2026, 11, 19, 10, 0, tzinfo=UTC)
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SETTLEMENT = D("91250.10")  # median of the recorded 11:59 closes: gemini 91250.10, coinbase 91240.50, binance 91275.46

pytestmark = pytest.mark.django_db


def recorded_venues(down: bool = False):
    """Venue factory serving the recorded answers (or a 503 from every venue)."""
    cases = {case.name: case for case in CASES}

    def factory(name: str):
        case = cases[name]
        session = requests.Session()
        replay = Replay(case.host).mount_on(session)
        outage = Answer(fixture("outage.html"), status=503, content_type="text/html")
        replay.route(case.ticker_path, outage if down else Answer(fixture(case.ticker_file)), case.ticker_query)
        replay.route(case.candles_path, outage if down else Answer(fixture(case.candles_file)), case.candles_query)
        return venue(name, timeout_s=2, session=session)

    return factory


@pytest.fixture
def day():
    pair = PairFactory()
    for name, symbol in (("gemini", "BTC/USD"), ("coinbase", "BTC/USD"), ("binance", "BTC/USDT")):
        VenueSymbol.objects.create(pair=pair, venue=name, symbol=symbol)
    terms = {"pair": pair, "expiry_date": EXPIRY}
    call = ContractFactory(kind="call", strike_px=D("90000"), **terms)
    put = ContractFactory(kind="put", strike_px=D("95000"), **terms)
    future = ContractFactory(kind="future", strike_px=None, **terms)
    traders = [FundLockFactory(currency=pair.quote, fundlock=D("200000")).client for _ in range(4)]
    return pair, (call, put, future), traders


def place(client, contract, side, price, quantity, now=DAY_BEFORE):
    order, _ = order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=f"{contract.pk}-{side}-{client.pk}", contract=contract, side=side, kind="limit",
        price=D(price), quantity=D(quantity)))
    return order_validate(order_id=order.pk, now=now)


def trade(pair, contracts, traders):
    call, put, future = contracts
    a, b, c, d = traders
    place(a, call, "buy", "2500", "0.5")
    place(b, call, "sell", "2500", "0.5")
    place(c, put, "buy", "4000", "1")
    place(d, put, "sell", "4000", "1")
    place(a, future, "buy", "91000", "0.2")  # the premium paid is price - floor = 41000
    place(d, future, "sell", "91000", "0.2")
    resting = place(c, call, "buy", "1000", "0.3")  # below every ask: still open at the halt
    auction = auction_open(pair=pair, now=DAY_BEFORE, interval=timedelta(seconds=10))
    auction_close(auction_id=auction.pk, now=DAY_BEFORE, settings=auction_settings())
    auction_solve(auction_id=auction.pk, now=DAY_BEFORE)
    auction_apply(auction_id=auction.pk, now=DAY_BEFORE)
    return resting


def states(contracts):
    return [Contract.objects.get(pk=c.pk).state for c in contracts]


def test_a_full_expiry_day(day):
    pair, contracts, traders = day
    a, b, c, d = traders
    resting = trade(pair, contracts, traders)
    assert FundLock.objects.get(client=c).order_value == D("300")  # the resting bid holds 1000 x 0.3

    # 00:00 on the expiry day: trading stops, open orders are cancelled and release their value
    assert contracts_lifecycle(now=datetime(2026, 11, 20, tzinfo=UTC))["halted"]
    assert states(contracts) == ["halted"] * 3
    resting.refresh_from_db()
    assert (resting.state, resting.history.last().reason) == ("cancelled", "contract_halted")
    assert FundLock.objects.get(client=c).order_value == 0
    with pytest.raises(ApplicationError) as refused:
        place(a, Contract.objects.get(pk=contracts[0].pk), "buy", "2500", "0.1",
              now=datetime(2026, 11, 20, 8, tzinfo=UTC))
    assert refused.value.code == "contract_halted"

    # 11:59 still halted; 12:00 expired but not settled before 12:10
    contracts_lifecycle(now=NOON - timedelta(minutes=1), venue_factory=recorded_venues())
    assert states(contracts) == ["halted"] * 3
    contracts_lifecycle(now=NOON + timedelta(minutes=5), venue_factory=recorded_venues())
    assert states(contracts) == ["expired"] * 3 and not CashMovement.objects.filter(origin="expiry").exists()

    # 12:10: the settlement price from the venues' prices for 12:00, then the payoffs
    result = contracts_lifecycle(now=NOON + timedelta(minutes=10), venue_factory=recorded_venues())
    assert result["settled"] and states(contracts) == ["settled"] * 3
    fixed = SpotPrice.objects.get(pair=pair, is_settlement=True)
    assert (fixed.price, fixed.observed_at) == (SETTLEMENT, NOON)
    assert sorted(fixed.venues) == ["binance", "coinbase", "gemini"]
    payoffs = {(m.client_id, m.contract.kind): m.amount for m in CashMovement.objects.filter(origin="expiry")}
    assert payoffs == {
        (a.pk, "call"): (SETTLEMENT - 90000) * D("0.5"), (b.pk, "call"): -(SETTLEMENT - 90000) * D("0.5"),
        (c.pk, "put"): 95000 - SETTLEMENT, (d.pk, "put"): -(95000 - SETTLEMENT),
        (a.pk, "future"): (SETTLEMENT - 50000) * D("0.2"), (d.pk, "future"): -(SETTLEMENT - 50000) * D("0.2"),
    }
    assert sum(payoffs.values()) == 0
    assert not Position.objects.exclude(quantity=0).exists()
    assert not Lockup.objects.exclude(amount=0).exists()
    for fund_lock in FundLock.objects.all():
        assert (fund_lock.lockup_value, fund_lock.order_value) == (0, 0) and fund_lock.available >= 0
    # the future buyer paid (91000 - 50000) x 0.2 and receives (S - floor) x 0.2: net (S - 91000) x 0.2
    assert FundLock.objects.get(client=a).settle_value == (
        -D("2500") * D("0.5") + (SETTLEMENT - 90000) * D("0.5") + (SETTLEMENT - 91000) * D("0.2"))

    # running every task again changes nothing
    def books():
        settle_values = FundLock.objects.order_by("id").values_list("settle_value", flat=True)
        return CashMovement.objects.count(), list(settle_values)

    before = books()
    contracts_lifecycle(now=NOON + timedelta(minutes=11), venue_factory=recorded_venues())
    contracts_lifecycle(now=NOON + timedelta(hours=3), venue_factory=recorded_venues())
    assert books() == before


def test_no_settlement_on_missing_prices_and_an_alert_until_they_come(day):
    pair, contracts, traders = day
    trade(pair, contracts, traders)
    contracts_lifecycle(now=datetime(2026, 11, 20, tzinfo=UTC))
    contracts_lifecycle(now=NOON + timedelta(minutes=10), venue_factory=recorded_venues(down=True))
    contracts_lifecycle(now=NOON + timedelta(minutes=11), venue_factory=recorded_venues(down=True))
    assert states(contracts) == ["expired"] * 3
    assert not SpotPrice.objects.filter(is_settlement=True).exists()
    alert = OperatorAlert.objects.get(resolved_at__isnull=True)
    assert alert.kind == "settlement_price" and alert.count == 2
    contracts_lifecycle(now=NOON + timedelta(minutes=12), venue_factory=recorded_venues())
    assert states(contracts) == ["settled"] * 3
    assert OperatorAlert.objects.get().resolved_at is not None


def test_payoffs_that_cannot_be_booked_raise_an_alert_and_stop_nothing_else(day):
    pair, (call, _, _), (a, _, _, _) = day
    Position.objects.create(client=a, contract=call, quantity=D("1"), updated_at=DAY_BEFORE)  # nobody is short
    contracts_lifecycle(now=datetime(2026, 11, 20, tzinfo=UTC))
    contracts_lifecycle(now=NOON + timedelta(minutes=11), venue_factory=recorded_venues())
    assert states([call]) == ["expired"] and not CashMovement.objects.exists()
    alert = OperatorAlert.objects.get(resolved_at__isnull=True)
    assert alert.kind == "expiry_settlement" and "sum to zero" in alert.message
