from celery import shared_task

from ccp.clock import utcnow
from ccp.system.services import heartbeat_beat


@shared_task(name="system.heartbeat")
def heartbeat() -> str:
    """Beat's proof of life: advances the ``heartbeat`` edge to now. Safe to run twice."""
    return heartbeat_beat(now=utcnow()).at.isoformat()
