from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin, ReadOnlyInline, related_link
from ccp.settlement.models import (
    CashMovement,
    CashMovementTracking,
    ChainContract,
    Deposit,
    SettlementBatch,
    Withdrawal,
)


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
    ordering = ["-id"]
    inlines = [TrackingInline]


@admin.register(CashMovementTracking)
class CashMovementTrackingAdmin(ReadOnlyAdmin):
    list_display = ["id", related_link("cash_movement", "cash movement"), "state", "batch_id", "tx_hash",
                    "block_number", "updated_at"]
    list_filter = ["state"]
    search_fields = ["tx_hash", "batch_id"]
    ordering = ["-id"]


@admin.register(ChainContract)
class ChainContractAdmin(ReadOnlyAdmin):
    list_display = ["name", "address", "chain_id", "deployed_block", "created_at"]


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ["client", "currency", "amount", "block_number", "tx_hash", "log_index", "recorded_at"]
    list_select_related = ["client", "currency"]
    search_fields = ["client__address", "tx_hash"]
    ordering = ["-block_number", "-log_index"]


@admin.register(SettlementBatch)
class SettlementBatchAdmin(ReadOnlyAdmin):
    list_display = ["batch_id", "currency", "nonce", "state", "movements_count", "tx_hash", "block_number",
                    "updated_at"]
    list_filter = ["state", "currency"]
    search_fields = ["batch_id", "tx_hash"]
    ordering = ["-id"]
    exclude = ["raw_tx"]


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    """Withdrawals are requested by clients over the API and released by settlement: operators look."""

    list_display = ["id", "client", "currency", "amount", "state", "client_withdrawal_id", "created_at",
                    "released_at", related_link("cash_movement", "cash movement")]
    list_filter = ["state", "currency"]
    list_select_related = ["client", "currency", "cash_movement"]
    search_fields = ["client__address", "client_withdrawal_id"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
