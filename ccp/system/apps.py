from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SystemConfig(AppConfig):
    name = "ccp.system"
    label = "system"
    verbose_name = "System"

    def ready(self) -> None:
        import ccp.schema  # noqa: F401  (registers the OpenAPI authentication extension)
        from ccp.system.schedules import schedules_ensure

        post_migrate.connect(schedules_ensure, sender=self)
