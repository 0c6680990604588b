from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin, ReadOnlyInline
from ccp.settlement.models import CashMovement, CashMovementTracking


class TrackingInline(ReadOnlyInline):
    model = CashMovementTracking
    fields = ["state", "batch_id", "tx_hash", "block_number", "updated_at"]
    readonly_fields = fields
    show_change_link = False


@admin.register(CashMovement)
class CashMovementAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "currency", "amount", "contract", "position_delta", "origin", "origin_ref",
                    "created_at"]
    list_filter = ["origin", "currency"]
    list_select_related = ["client", "currency", "contract"]
    search_fields = ["client__address", "origin_ref", "contract__symbol"]
    inlines = [TrackingInline]


@admin.register(CashMovementTracking)
class CashMovementTrackingAdmin(ReadOnlyAdmin):
    list_display = ["cash_movement", "state", "batch_id", "tx_hash", "block_number", "updated_at"]
    list_filter = ["state"]
    search_fields = ["tx_hash", "batch_id"]
