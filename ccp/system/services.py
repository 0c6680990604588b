from datetime import datetime

from django.db import transaction

from ccp.clock import require_aware
from ccp.errors import ApplicationError
from ccp.streams import SYSTEM_GROUP, stream_publish
from ccp.system.models import Edge, OperatorAlert

HEARTBEAT_EDGE = "heartbeat"


@transaction.atomic
def edge_advance(*, name: str, now: datetime, at: datetime | None = None, block_number: int | None = None,
                 block_hash: str = "") -> Edge:
    """Move an edge forward to ``at`` and/or ``block_number``; never backwards.

    Locks the edge row. Idempotent: advancing to a position already reached changes nothing.
    """
    now = require_aware(now)
    edge, created = Edge.objects.select_for_update().get_or_create(
        name=name, defaults={"at": at, "block_number": block_number, "block_hash": block_hash, "updated_at": now}
    )
    if created:
        return edge
    changed = []
    if at is not None and (edge.at is None or require_aware(at) > edge.at):
        edge.at, changed = at, [*changed, "at"]
    if block_number is not None and (edge.block_number is None or block_number > edge.block_number):
        edge.block_number, edge.block_hash, changed = block_number, block_hash, [*changed, "block_number",
                                                                                  "block_hash"]
    if changed:
        edge.updated_at = now
        edge.save(update_fields=[*changed, "updated_at"])
    return edge


@transaction.atomic
def edge_rewind(*, name: str, block_number: int, now: datetime) -> Edge:
    """Move a block edge back to ``block_number`` (an operator's action after a reorganisation, or after
    the node lost blocks): its loop reads again from the next block. The loops key what they credit by
    what they read (deposits by transaction hash and log index), so reading again credits nothing twice.
    The block hash is forgotten: the loop's reorg check starts again from its next advance.
    Locks the edge row; refuses to move it forward or below block 0."""
    now = require_aware(now)
    edge = Edge.objects.select_for_update().filter(name=name).first()
    if edge is None or edge.block_number is None:
        raise ApplicationError(f"{name} is not an edge of blocks.", code="edge_not_blocks")
    if not 0 <= block_number <= edge.block_number:
        raise ApplicationError(f"{name} can only move back, to a block from 0 to {edge.block_number}.",
                               code="edge_not_back", extra={"block_number": edge.block_number})
    edge.block_number, edge.block_hash, edge.updated_at = block_number, "", now
    edge.save(update_fields=["block_number", "block_hash", "updated_at"])
    return edge


def heartbeat_beat(*, now: datetime) -> Edge:
    """Record that the worker ran at ``now`` and tell WebSocket listeners, after the commit."""
    with transaction.atomic():
        edge = edge_advance(name=HEARTBEAT_EDGE, now=now, at=now)
        stream_publish(SYSTEM_GROUP, {"type": "heartbeat", "at": edge.at.isoformat()})
    return edge


@transaction.atomic
def alert_raise(*, key: str, kind: str, message: str, now: datetime) -> OperatorAlert:
    """Open an alert for operators, or update the open one with this key. Idempotent per key."""
    now = require_aware(now)
    alert = OperatorAlert.objects.select_for_update().filter(key=key, resolved_at__isnull=True).first()
    if alert is None:
        return OperatorAlert.objects.create(key=key, kind=kind, message=message, raised_at=now, updated_at=now)
    alert.message, alert.updated_at, alert.count = message, now, alert.count + 1
    alert.save(update_fields=["message", "updated_at", "count"])
    return alert


def alert_resolve(*, key: str, now: datetime) -> int:
    """Close the open alert with this key (the condition cleared). Returns how many were closed."""
    return OperatorAlert.objects.filter(key=key, resolved_at__isnull=True).update(resolved_at=require_aware(now))
