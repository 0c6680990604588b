from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from ccp.admin_utils import ReadOnlyAdmin
from ccp.clock import utcnow
from ccp.errors import ApplicationError
from ccp.prices.models import ReferencePrice, SpotPrice, VenueSymbol
from ccp.prices.services import reference_price_initial_set


@admin.register(VenueSymbol)
class VenueSymbolAdmin(admin.ModelAdmin):
    """How each venue names a pair: the spot price and settlement price loops use these."""

    list_display = ["pair", "venue", "symbol", "enabled"]
    list_filter = ["venue", "enabled"]
    list_editable = ["symbol", "enabled"]


@admin.register(SpotPrice)
class SpotPriceAdmin(ReadOnlyAdmin):
    list_display = ["pair", "source", "price", "observed_at", "fetched_at", "is_settlement"]
    list_filter = ["is_settlement", "source", "pair"]
    date_hierarchy = "observed_at"


class InitialPriceForm(forms.ModelForm):
    class Meta:
        model = ReferencePrice
        fields = ["contract", "price"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.instance = reference_price_initial_set(contract=data["contract"], price=data["price"], now=utcnow(),
                                                        commit=False)
        except ApplicationError as exc:
            raise ValidationError(f"{exc.message} ({exc.code})") from exc
        return data


@admin.register(ReferencePrice)
class ReferencePriceAdmin(ReadOnlyAdmin):
    """Clearing prices are written by auctions; operators may set a contract's initial price once."""

    form = InitialPriceForm
    list_display = ["contract", "kind", "price", "at", "auction_ref"]
    list_filter = ["kind"]
    list_select_related = ["contract"]
    search_fields = ["contract__symbol"]
    ordering = ["-at", "-id"]

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("prices.add_referenceprice")
