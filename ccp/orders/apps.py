from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "ccp.orders"
    label = "orders"
