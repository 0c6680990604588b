from django.contrib import admin

from ccp.admin_utils import ReadOnlyAdmin
from ccp.marketdata.models import Candle


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    """Candles as trades made them (written only when trades are booked), newest first."""

    list_display = ["bucket_start", "contract", "interval", "open", "high", "low", "close", "volume", "trade_count",
                    "first_sequence", "last_sequence"]
    list_filter = ["interval", "contract__expiry_date", "contract"]
    list_select_related = ["contract"]
    ordering = ["-id"]
    show_full_result_count = False
