from django.apps import AppConfig


class PerpsConfig(AppConfig):
    name = "ccp.perps"
    label = "perps"
    verbose_name = "perpetuals"
