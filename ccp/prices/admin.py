from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin
from ccp.prices.models import ReferencePrice, SpotPrice


@admin.register(SpotPrice)
class SpotPriceAdmin(ReadOnlyAdmin):
    list_display = ["pair", "source", "price", "observed_at", "fetched_at", "is_settlement"]
    list_filter = ["is_settlement", "source", "pair"]
    date_hierarchy = "observed_at"


@admin.register(ReferencePrice)
class ReferencePriceAdmin(ReadOnlyAdmin):
    list_display = ["contract", "kind", "price", "at", "auction_ref"]
    list_filter = ["kind"]
    list_select_related = ["contract"]
    search_fields = ["contract__symbol"]
