from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin, ReadOnlyInline, related_link
from ccp.orders.models import Order, OrderStateHistory


class OrderStateHistoryInline(ReadOnlyInline):
    model = OrderStateHistory
    fields = ["at", "from_state", "to_state", "reason", "filled_quantity"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "contract", "side", "price", "quantity", "filled_quantity", "state",
                    "reject_reason", "order_value", "created_at"]
    list_filter = ["state", "side", "contract__expiry_date"]
    list_select_related = ["client", "contract"]
    search_fields = ["client__address", "contract__symbol", "client_order_id"]
    ordering = ["-id"]
    inlines = [OrderStateHistoryInline]


@admin.register(OrderStateHistory)
class OrderStateHistoryAdmin(ReadOnlyAdmin):
    list_display = ["id", related_link("order", "order"), "from_state", "to_state", "reason", "filled_quantity",
                    "at"]
    fields = list_display[1:]
    readonly_fields = fields
    list_filter = ["to_state"]
    search_fields = ["order__id", "order__client__address"]
    ordering = ["-id"]
