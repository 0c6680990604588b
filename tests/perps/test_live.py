"""The liquidation engine's live index (``ccp.perps.live``): kept in this process's memory, synced from the positions
written since its last use (``risk_position.written_xid``, set by a trigger whoever writes), it finds exactly the
positions the PostgreSQL probe finds, worst first, whatever ran between two checks."""

import random
import threading
from decimal import Decimal as D
from fractions import Fraction

import pytest
from django.db import connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.db import bulk_insert_rows, bulk_upsert_rows, ids_reserve
from ccp.perps.index import LONG, SHORT
from ccp.perps.live import LiveIndex, isolated_crossed, isolated_crossed_synced, live_indexes_drop
from ccp.perps.margin import Tier
from ccp.perps.models import Perpetual
from ccp.perps.services import isolated_candidates, perpetual_liquidations_enter
from ccp.perps.watch import isolated_reached
from ccp.risk.models import Position
from tests.book.test_venue import match, send, trader
from tests.factories import ClientFactory
from tests.perps.test_crash import falling, isolated_walk, market
from tests.perps.test_trading import perp  # noqa: F401 - fixture

MARK = D(45000)


def held(contract, quantity: str, liquidation: str | None, now) -> Position:
    """An isolated position of ``quantity`` (signed) whose stored liquidation price is ``liquidation``."""
    q = D(quantity)
    key = None if liquidation is None else D(liquidation) * (1 if q > 0 else -1)
    return Position.objects.create(client=ClientFactory(), contract=contract, quantity=q, cost=q * 50000,
                                   entry_price=D(50000), margin_mode="isolated", margin=abs(q) * 5000,
                                   liquidation_px=None if key is None else abs(key), liquidation_key=key,
                                   updated_at=now)


def crossed(contract, mark=MARK) -> list[int]:
    return list(isolated_crossed(contract=contract, perpetual=Perpetual.objects.get(contract=contract), mark=mark))


def probed(contract, mark=MARK) -> set[int]:
    """What PostgreSQL's probe finds: the positions whose stored liquidation key ``mark`` reached."""
    return {r.position_id for r in isolated_reached(contract_id=contract.pk, mark=mark)}


def moved(position: Position, liquidation: str | None) -> None:
    key = None if liquidation is None else D(liquidation) * (1 if position.quantity > 0 else -1)
    Position.objects.filter(pk=position.pk).update(liquidation_key=key, liquidation_px=key and abs(key))


@pytest.mark.django_db
def test_the_index_finds_what_the_database_holds_after_every_kind_of_write(perp, now):  # noqa: F811
    # Built at the first check; then every writer: the ORM's save, QuerySet.update, the bulk upsert the booking
    # uses, COPY. Each write goes through the trigger, so the next check reads it.
    a, b = held(perp, "0.1", "45500", now), held(perp, "0.1", "44000", now)
    c = held(perp, "-0.1", "44500", now)
    assert crossed(perp) == [c.pk, a.pk] and set(crossed(perp)) == probed(perp)  # c the further past its price
    moved(b, "46000")  # QuerySet.update: crossed now, and worse than a
    a.margin_mode, a.quantity, a.cost, a.entry_price, a.margin = "cross", D("0.1"), D(5000), D(50000), D(0)
    a.liquidation_px = a.liquidation_key = None
    a.save()  # gone cross: no key
    row = Position.objects.filter(pk=c.pk).values().get()
    row.pop("id")
    bulk_upsert_rows(Position, [{**row, "quantity": D(0), "cost": D(0), "entry_price": None, "margin_mode": "",
                                 "margin": D(0), "liquidation_px": None, "liquidation_key": None, "call_px": None,
                                 "call_key": None}],
                     key=["client_id", "contract_id"], replace=["quantity", "cost", "entry_price", "margin_mode",
                                                                "margin", "liquidation_px", "liquidation_key"])
    [d_id] = ids_reserve(Position, 1)
    bulk_insert_rows(Position, [{**row, "id": d_id, "client_id": ClientFactory().pk, "liquidation_px": D(45000),
                                 "liquidation_key": D(-45000)}], with_pk=True)
    assert crossed(perp) == [b.pk, d_id]  # c flat, a cross: out; d a short right at its price
    assert set(crossed(perp)) == probed(perp)
    live_indexes_drop()  # a fresh process builds the same from the database
    assert crossed(perp) == [b.pk, d_id]


@pytest.mark.django_db
def test_worst_first_across_tiers_and_sides(perp, now):  # noqa: F811
    # Equity over requirement at the mark, from the stored price: a long's (M - L (1 - k)) / k M, k the tier's
    # rate plus the 0.2% fee (tier 1: up to 10 at 0.5%, tier 2 above at 1%); a short's (L (1 + k) - M) / k M.
    small = held(perp, "1", "45100", now)  # (45,000 - 45,100 x 0.993) / (0.007 x 45,000) = 0.6825
    large = held(perp, "20", "45300", now)  # (45,000 - 45,300 x 0.988) / (0.012 x 45,000) = 0.4467
    close = held(perp, "1", "45000", now)  # 1 - 0.993 ... / 0.007 = 1.0
    short = held(perp, "-1", "44800", now)  # (44,800 x 1.007 - 45,000) / (0.007 x 45,000) = 0.3822
    held(perp, "1", "44999", now)  # not crossed
    assert crossed(perp) == [short.pk, large.pk, small.pk, close.pk]


@st.composite
def books(draw):
    entries = draw(st.lists(st.tuples(st.integers(0, 1), st.sampled_from([LONG, SHORT]), st.integers(1, 60)),
                            max_size=60))
    return [(key + 1, tier, side, ticks) for key, (tier, side, ticks) in enumerate(entries)]


@settings(max_examples=200, deadline=None)
@given(entries=books(), mark=st.integers(1, 61), fee=st.sampled_from([D(0), D("0.002")]),
       tick=st.sampled_from([D("0.5"), D(1)]))
def test_worst_first_is_the_exact_order_of_equity_over_requirement(entries, mark, fee, tick):
    tiers = [Tier(D(10), D("0.005"), D(100)), Tier(None, D("0.01"), D(50))]
    live = LiveIndex(tick=tick, tiers=tuple(tiers))
    for key, tier, side, ticks in entries:
        live.index.set(key, contract=tier, side=side, ticks=ticks)
    m = Fraction(mark * tick)

    def ratio(tier, side, ticks):
        k, price = Fraction(tiers[tier].rate + fee), Fraction(ticks * tick)
        return ((m - price * (1 - k)) if side == LONG else (price * (1 + k) - m)) / (k * m)

    expected = [key for _, key in sorted((ratio(tier, side, ticks), key) for key, tier, side, ticks in entries
                                         if (ticks >= mark if side == LONG else ticks <= mark))]
    found = live.crossing(mark=mark * tick, fee_rate=fee)
    assert list(found) == expected and len(found) == len(expected)


@pytest.mark.django_db
def test_a_mark_between_two_ticks_crosses_each_side_at_its_own_tick(perp, now):  # noqa: F811
    long, short = held(perp, "0.1", "45000.5", now), held(perp, "-0.1", "45000", now)
    held(perp, "0.1", "45000", now)
    held(perp, "-0.1", "45000.5", now)
    assert set(crossed(perp, D("45000.25"))) == {long.pk, short.pk} == probed(perp, D("45000.25"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_sync", ["build", "sync"])
def test_a_position_written_by_a_transaction_in_flight_at_a_sync_is_found_by_the_next(perp, now, first_sync):  # noqa: F811
    # A writer's transaction takes its id and writes before the check's sync, a later transaction commits before
    # it, and the writer commits after it: the next sync must read the writer's row. A watermark taken past the
    # writer (the highest id read, or the snapshot's xmax) would skip it for ever.
    early, late = held(perp, "0.1", "44000", now), held(perp, "0.1", "44000", now)
    if first_sync == "sync":
        assert crossed(perp) == []  # built before the writer starts
    written, go = threading.Event(), threading.Event()
    failed = []

    def writer():
        try:
            with transaction.atomic():
                moved(early, "45500")
                written.set()
                assert go.wait(30)
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(exc)
            written.set()
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(30)
    moved(late, "45100")  # a later transaction, committed at once
    assert crossed(perp) == [late.pk]  # the writer's row is not committed yet
    go.set()
    thread.join(30)
    assert not failed
    assert crossed(perp) == [early.pk, late.pk] and set(crossed(perp)) == probed(perp)


@pytest.mark.django_db(transaction=True)
def test_a_sync_inside_a_transaction_that_rolls_back_leaves_nothing_behind(perp, now):  # noqa: F811
    # The check's own uncommitted writes are visible to its sync; after a rollback the index holds the committed
    # rows again (re-read by id), not what was rolled back.
    a, b = held(perp, "0.1", "45500", now), held(perp, "0.1", "40000", now)
    assert crossed(perp) == [a.pk]
    with pytest.raises(RuntimeError), transaction.atomic():
        moved(a, None)  # closed...
        moved(b, "46000")
        c = held(perp, "0.1", "45200", now)
        assert crossed(perp) == [b.pk, c.pk]
        raise RuntimeError("rolled back")
    assert crossed(perp) == [a.pk] and set(crossed(perp)) == probed(perp)


@pytest.mark.django_db(transaction=True)
def test_a_quiet_sync_reads_only_what_changed(perp, now):  # noqa: F811
    for _ in range(5):
        held(perp, "0.1", "40000", now)
    perpetual = Perpetual.objects.get(contract=perp)
    _, first = isolated_crossed_synced(contract=perp, perpetual=perpetual, mark=MARK)
    assert (first.built, first.rows) == (True, 5)
    _, quiet = isolated_crossed_synced(contract=perp, perpetual=perpetual, mark=MARK)
    assert (quiet.built, quiet.rows) == (False, 0)
    changed = held(perp, "0.1", "45500", now)
    found, synced = isolated_crossed_synced(contract=perp, perpetual=perpetual, mark=MARK)
    assert (synced.rows, list(found)) == (1, [changed.pk])


@pytest.mark.django_db
@pytest.mark.parametrize("worker", ["restarted", "kept its index"])
def test_the_check_after_a_crash_finds_every_position_that_crossed_meanwhile(perp, now, time_machine, worker):  # noqa: F811
    # The liquidation worker checked before the crash (its index built), then either restarted (a fresh process:
    # built again from the database) or kept its index while trades and marks moved without it: either way its
    # next check liquidates exactly what a plain walk over every position finds.
    time_machine.move_to(now)
    market(perp, now, random.Random(7))
    assert perpetual_liquidations_enter(contract_id=perp.pk, now=now) == []
    if worker == "restarted":
        live_indexes_drop()
    maker = trader(perp, "100000000")  # positions opened after that check, through the order path
    late = [trader(perp, "1000") for _ in range(2)]
    for client in late:
        send(maker, perp, "sell", "50000", "0.1", leverage=D(1), margin_mode="cross")
        send(client, perp, "buy", "50000", "0.1", leverage=D(50), margin_mode="isolated")
    match(perp)
    at = falling(perp, now, time_machine)
    perpetual = Perpetual.objects.get(contract=perp)
    walked = isolated_walk(perp)
    assert len(walked) >= 3 and {c.pk for c in late} <= walked
    assert {c.client_id for c in isolated_candidates(contract=perp, perpetual=perpetual, mark=perpetual.mark_px)} \
        == walked
    steps = perpetual_liquidations_enter(contract_id=perp.pk, now=at)
    assert {step.client_id for step in steps} >= walked  # and the cross accounts below their requirement
