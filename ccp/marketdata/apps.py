from django.apps import AppConfig


class MarketDataConfig(AppConfig):
    name = "ccp.marketdata"
    label = "marketdata"
