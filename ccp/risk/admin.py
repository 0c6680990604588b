from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin
from ccp.risk.models import Lockup, Position


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ["client", "contract", "quantity", "entry_price", "cost", "realised_pnl", "updated_at"]
    list_filter = ["contract__expiry_date", "contract__kind"]
    list_select_related = ["client", "contract"]
    search_fields = ["client__address", "contract__symbol"]


@admin.register(Lockup)
class LockupAdmin(ReadOnlyAdmin):
    list_display = ["client", "pair", "expiry_date", "currency", "amount", "updated_at"]
    list_filter = ["expiry_date", "pair"]
    list_select_related = ["client", "pair__base", "pair__quote", "currency"]
    search_fields = ["client__address"]
