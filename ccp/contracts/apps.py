from django.apps import AppConfig


class ContractsConfig(AppConfig):
    name = "ccp.contracts"
    label = "contracts"
