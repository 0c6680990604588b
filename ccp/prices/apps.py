from django.apps import AppConfig


class PricesConfig(AppConfig):
    name = "ccp.prices"
    label = "prices"
