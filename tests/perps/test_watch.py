"""Trigger prices kept with each isolated position (``Position.liquidation_px``, ``call_px``), the positions a mark
reaches found through their index (``ccp.perps.watch``), and the margin call sent before liquidation."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse

from ccp.perps.models import Perpetual
from ccp.perps.positions import position_margin_adjust
from ccp.perps.services import perpetual_marks_update, perpetuals_margin_call
from ccp.perps.watch import isolated_called, isolated_reached, positions_nearest_liquidation
from ccp.risk.models import Position
from tests.book.test_venue import match, send, trader
from tests.contracts.test_halt import sent  # noqa: F401 - fixture
from tests.perps.test_listing import quote
from tests.perps.test_trading import perp  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def triggers(client, contract):
    p = Position.objects.get(client=client, contract=contract)
    return p.liquidation_px, p.call_px


def test_an_isolated_position_keeps_its_liquidation_and_call_prices(perp):  # noqa: F811
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.2", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    # margin 500: liquidated at (5,000 - 500) / (0.1 x (1 - 0.005 - 0.002)) = 45,317.22 -> 45,317 on the 0.5 grid;
    # called when 0.007 x notional reaches 80% of equity: 4,500 / (0.1 x (1 - 0.007 / 0.8)) = 45,397.22 -> 45,397
    assert triggers(alice, perp) == (D(45317), D(45397))
    assert triggers(bob, perp) == (None, None)  # cross: its account is checked whole
    send(alice, perp, "buy", "50000", "0.1", leverage=D(2), margin_mode="isolated")
    match(perp)  # 0.2 at 50,000 with 500 + 2,500: (10,000 - 3,000) / 0.1986 = 35,246.72 -> 35,246.5
    assert triggers(alice, perp)[0] == D("35246.5")
    send(bob, perp, "buy", "50000", "0.2", leverage=D(5), margin_mode="cross")
    send(alice, perp, "sell", "50000", "0.2", leverage=D(2), margin_mode="isolated")
    match(perp)
    assert triggers(alice, perp) == (None, None)  # flat


def test_a_mark_reaches_exactly_the_positions_whose_prices_it_crossed(perp, now):  # noqa: F811
    alice, bob, carol = trader(perp, "10000"), trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    send(carol, perp, "sell", "50000", "0.1", leverage=D(2), margin_mode="cross")
    send(carol, perp, "buy", "50000", "0.1", leverage=D(2), margin_mode="cross")
    match(perp)
    # Bob's short: liquidated from 5,500 / (0.1 x 1.007) = 54,617.68 -> 54,618 up, called from
    # 5,500 / (0.1 x (1 + 0.00875)) = 54,522.92 -> 54,523
    assert triggers(bob, perp) == (D(54618), D(54523))

    def reached(mark):
        return [p.client_id for p in isolated_reached(contract_id=perp.pk, mark=D(mark))]

    def called(mark):
        return [p.client_id for p in isolated_called(contract_id=perp.pk, mark=D(mark), now=now)]

    assert reached("45317.5") == [] and reached("45317") == [alice.pk] and reached("40000") == [alice.pk]
    assert reached("54617.5") == [] and reached("54618") == [bob.pk]
    assert called("45397.5") == [] and called("45397") == [alice.pk] and called("45317") == []  # liquidated
    assert called("54522.5") == [] and called("54523") == [bob.pk]


def test_a_margin_call_goes_out_once_then_again_after_the_repeat_interval(perp, now, sent, settings,  # noqa: F811
                                                                          django_capture_on_commit_callbacks):
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    Perpetual.objects.filter(contract=perp).update(mark_px=D(45390), index_px=D(45390), marked_at=now)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert perpetuals_margin_call(now=now) == 1
    [(_, message)] = sent
    event = message["event"]
    assert (event["type"], event["contract"], event["quantity"], event["mark_price"], event["liquidation_price"]) == (
        "margin_call", perp.symbol, "0.1", "45390", "45317")
    later = now + timedelta(seconds=settings.CCP_MARGIN_CALL_REPEAT_SECONDS)
    Perpetual.objects.filter(contract=perp).update(marked_at=later)
    assert perpetuals_margin_call(now=later - timedelta(seconds=1)) == 0
    assert perpetuals_margin_call(now=later) == 1


def test_margin_added_or_taken_out_moves_the_stored_trigger_prices(perp, now, time_machine):  # noqa: F811
    time_machine.move_to(now)
    alice, bob = trader(perp, "10000"), trader(perp, "10000")
    send(bob, perp, "sell", "50000", "0.1", leverage=D(5), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")
    match(perp)
    position = Position.objects.get(client=alice, contract=perp)
    Position.objects.filter(pk=position.pk).update(margin_called_at=now)
    position_margin_adjust(client=alice, contract=perp, amount=D(100), now=now)
    # margin 600: (5,000 - 600) / 0.0993 = 44,310.17 -> 44,310; 4,400 / 0.099125 = 44,388.40 -> 44,388
    assert triggers(alice, perp) == (D(44310), D(44388))
    assert Position.objects.get(pk=position.pk).margin_called_at is None  # the next call is due at once


def test_operators_see_the_positions_nearest_liquidation_first(perp, now, time_machine, admin_client):  # noqa: F811
    time_machine.move_to(now)
    alice, bob, carol = trader(perp, "10000"), trader(perp, "1000"), trader(perp, "100000")
    send(carol, perp, "sell", "50000", "0.2", leverage=D(2), margin_mode="cross")
    send(alice, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="isolated")  # liquidates at 45,317
    send(bob, perp, "buy", "50000", "0.1", leverage=D(10), margin_mode="cross")  # 1,000 behind it: 40,281.5
    match(perp)
    quote(perp.pair, "binance", "46000", now)
    perpetual_marks_update(now=now)
    rows = positions_nearest_liquidation(limit=10)
    assert [(r.client, r.mode, r.liquidation_px) for r in rows[:2]] == [
        (alice.checksum_address, "isolated", D(45317)), (bob.checksum_address, "cross", D("40281.5"))]
    assert rows[0].distance == (D(46000) - D(45317)) / D(46000)
    page = admin_client.get(reverse("admin:perps_positionatrisk_changelist"))
    assert page.status_code == 200 and alice.checksum_address.encode() in page.content
    assert b">45317<" in page.content and b">1.48%<" in page.content  # plain digits
    assert admin_client.get(reverse("admin:perps_funding_changelist")).status_code == 200
