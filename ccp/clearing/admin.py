from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin
from ccp.clearing.models import Trade


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    """The trade ledger, newest first: search by either side's client address, order id or the venue's
    event (``auction-42``)."""

    list_display = ["id", "executed_at", "contract", "sequence", "price", "quantity", "buy_client", "sell_client",
                    "buy_order_id", "sell_order_id", "venue", "venue_ref"]
    list_filter = ["venue", "contract__expiry_date", "contract"]
    list_select_related = ["contract", "buy_client", "sell_client"]
    search_fields = ["buy_client__address", "sell_client__address", "venue_ref", "=buy_order__id", "=sell_order__id"]
    ordering = ["-id"]
    raw_id_fields = ["buy_order", "sell_order"]
    show_full_result_count = False
