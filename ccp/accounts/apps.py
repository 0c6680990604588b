from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "ccp.accounts"
    label = "accounts"
