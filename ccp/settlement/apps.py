from django.apps import AppConfig


class SettlementConfig(AppConfig):
    name = "ccp.settlement"
    label = "settlement"
