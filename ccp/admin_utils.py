"""Webconsole helpers shared by the apps' admin modules."""

from decimal import Decimal

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist

from ccp.money import MoneyField, money_str


def money_plain(value: Decimal | None) -> str:
    """100000.000000000000000000 -> 100000; 0.010000000000000000 -> 0.01."""
    return "-" if value is None else money_str(value)


def _money_column(model, name: str):
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return name
    if not isinstance(field, MoneyField):
        return name

    @admin.display(description=field.verbose_name, ordering=name)
    def column(obj):
        return money_plain(getattr(obj, name))

    return column


class CcpAdmin(admin.ModelAdmin):
    """Shows money columns without 18 trailing places."""

    def get_list_display(self, request):
        return [_money_column(self.model, name) if isinstance(name, str) else name
                for name in super().get_list_display(request)]


class ReadOnlyAdmin(CcpAdmin):
    """Money history and state written only by services: operators look, never edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
