"""Webconsole helpers shared by the apps' admin modules."""

from decimal import Decimal
from functools import cache
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from ccp.errors import ApplicationError
from ccp.money import MoneyField, money_str


def money_plain(value: Decimal | None) -> str:
    """100000.000000000000000000 -> 100000; 0.010000000000000000 -> 0.01."""
    return "-" if value is None else money_str(value)


@cache  # one callable per column: the admin tells read-only fields by identity
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


def money_columns(model, names) -> list:
    """``names`` with each money field replaced by a column showing it plainly."""
    return [_money_column(model, name) if isinstance(name, str) else name for name in names]


def related_link(name: str, description: str):
    """A column linking to the row's ``name`` object, labelled by its id: a short cell, where the object's
    own name would repeat the row (and an order's name carries its price and quantity)."""

    @admin.display(description=description, ordering=name)
    def column(obj):
        target = getattr(obj, name)
        if target is None:
            return "-"
        opts = target._meta
        return format_html('<a href="{}">#{}</a>', reverse(f"admin:{opts.app_label}_{opts.model_name}_change",
                                                           args=[target.pk]), target.pk)

    return column


def changelist_link(model, text: str, **params) -> str:
    """A link to ``model``'s list filtered by ``params`` (its list filters' query string)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), text)


class ChosenValueFilter(admin.SimpleListFilter):
    """A filter on one value given in the URL (``?<parameter_name>=<value>``), for a column with too many
    values to list in the sidebar (clients, auctions): pages link to it, and the sidebar shows the value
    once chosen. Subclasses say how a value reads (``label``) and which rows it selects (``condition``)."""

    def label(self, value: str) -> str:
        return value

    def condition(self, value: str) -> Q:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        # Listed even when nothing matches it, so that it still filters (to no rows).
        value = self.value()
        return [] if value is None else [(value, self.label(value))]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(self.condition(value))


class CcpAdmin(admin.ModelAdmin):
    """Shows money columns without 18 trailing places."""

    def get_list_display(self, request):
        return money_columns(self.model, super().get_list_display(request))

    def get_fields(self, request, obj=None):
        # Only a page that shows the object read-only: an edit form needs the field itself.
        fields = super().get_fields(request, obj)
        return fields if obj is None or self.has_change_permission(request, obj) else money_columns(self.model, fields)


class ReadOnlyAdmin(CcpAdmin):
    """Money history and state written only by services: operators look, never edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """A read-only table on a change page, its money shown plainly as in the lists."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_fields(self, request, obj=None):
        return money_columns(self.model, super().get_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        return money_columns(self.model, super().get_readonly_fields(request, obj))

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def service_form_view(model_admin, request, form, *, title: str, template: str, submit, done_url: str):
    """A webconsole page whose form runs a service: ``submit(form)`` (on a valid POST) calls it and returns
    the objects it added and the success message; the additions go to the admin log and the operator to
    ``done_url``. A refusal (``ApplicationError``) shows on the form with its code, and nothing changes."""
    if request.method == "POST" and form.is_valid():
        try:
            added, message = submit(form)
        except ApplicationError as exc:
            form.add_error(None, f"{exc.message} ({exc.code})")
        else:
            for obj in added:
                model_admin.log_addition(request, obj, [{"added": {}}])
            messages.success(request, message)
            return redirect(done_url)
    context = {**model_admin.admin_site.each_context(request), "title": title, "form": form,
               "opts": model_admin.model._meta, "media": model_admin.media + form.media}
    return TemplateResponse(request, template, context)
