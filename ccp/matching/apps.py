from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "ccp.matching"
    label = "matching"
    verbose_name = "Auctions"
