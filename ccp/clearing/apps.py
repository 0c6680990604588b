from django.apps import AppConfig


class ClearingConfig(AppConfig):
    name = "ccp.clearing"
    label = "clearing"
