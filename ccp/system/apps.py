from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SystemConfig(AppConfig):
    name = "ccp.system"
    label = "system"
    verbose_name = "System"

    def ready(self) -> None:
        from ccp.system.schedules import schedules_ensure

        post_migrate.connect(schedules_ensure, sender=self)
