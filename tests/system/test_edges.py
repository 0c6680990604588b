from datetime import timedelta

import pytest

from ccp.system.models import Edge
from ccp.system.services import HEARTBEAT_EDGE, edge_advance
from ccp.system.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_edge_moves_forward_never_back(now):
    edge_advance(name="deposits", now=now, block_number=100)
    edge_advance(name="deposits", now=now, block_number=90)
    assert Edge.objects.get(name="deposits").block_number == 100
    edge_advance(name="deposits", now=now + timedelta(seconds=1), block_number=101)
    edge = Edge.objects.get(name="deposits")
    assert edge.block_number == 101 and edge.updated_at == now + timedelta(seconds=1)


def test_advancing_to_the_same_place_twice_changes_nothing(now):
    first = edge_advance(name="spot", now=now, at=now)
    again = edge_advance(name="spot", now=now + timedelta(minutes=1), at=now)
    assert again.at == first.at and again.updated_at == now


def test_naive_time_is_refused(now):
    with pytest.raises(ValueError, match="naive"):
        edge_advance(name="spot", now=now.replace(tzinfo=None), at=now)


def test_heartbeat_task_run_twice_keeps_one_edge_at_the_latest_run():
    first = heartbeat.apply().get()
    second = heartbeat.apply().get()
    assert Edge.objects.filter(name=HEARTBEAT_EDGE).count() == 1
    assert Edge.objects.get(name=HEARTBEAT_EDGE).at.isoformat() == max(first, second)
