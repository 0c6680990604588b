from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "ccp.risk"
    label = "risk"
