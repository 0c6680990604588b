from django.apps import AppConfig


class BookConfig(AppConfig):
    name = "ccp.book"
    label = "book"
    verbose_name = "continuous book"
