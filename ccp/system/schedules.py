"""Default beat schedules, created once in the database (django-celery-beat).

Created when missing and never overwritten, so an operator's change in the admin survives
restarts and migrations.
"""

from django.conf import settings


def default_schedules() -> list[dict]:
    return [
        {"name": "heartbeat", "task": "system.heartbeat", "every_seconds": settings.CCP_HEARTBEAT_SECONDS},
        {"name": "requeue stale orders", "task": "orders.requeue_stale", "every_seconds": 15},
        {"name": "sweep sign-in challenges and tokens", "task": "accounts.sweep", "every_seconds": 600},
        {"name": "contract lifecycle and expiry", "task": "contracts.lifecycle", "every_seconds": 60},
        {"name": "spot prices", "task": "prices.load_spot", "every_seconds": settings.CCP_SPOT_INTERVAL_SECONDS},
        {"name": "perpetual funding", "task": "perps.fund", "every_seconds": 60},
        {"name": "chain deposits", "task": "settlement.monitor_deposits", "every_seconds": 5},
        {"name": "chain settlement: submit", "task": "settlement.submit", "every_seconds": 5},
        {"name": "chain settlement: confirm", "task": "settlement.confirm", "every_seconds": 5},
        {"name": "chain reconciliation", "task": "settlement.reconcile", "every_seconds": 300},
        {"name": "batch auctions", "task": "matching.start_auctions",
         "every_seconds": int(settings.CCP_AUCTION_INTERVAL.total_seconds())},
    ]


def schedules_ensure(*args, using: str = "default", **kwargs) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for spec in default_schedules():
        if PeriodicTask.objects.using(using).filter(name=spec["name"]).exists():
            continue
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=spec["every_seconds"], period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.using(using).create(name=spec["name"], task=spec["task"], interval=interval)
