from django.contrib import admin
from django.db.models import Q

from ccp.accounts.models import Client
from ccp.admin_utils import ChosenValueFilter, ReadOnlyAdmin, changelist_link
from ccp.clearing.models import Trade


class ClientFilter(ChosenValueFilter):
    """The trades of one client, on either side: ``?client=<client id>``."""

    title = "client (buy or sell)"
    parameter_name = "client"

    def label(self, value: str) -> str:
        client = Client.objects.filter(pk=value).first() if value.isdigit() else None
        return f"client {value} (none)" if client is None else client.checksum_address

    def condition(self, value: str) -> Q:
        if not value.isdigit():
            return Q(pk__in=[])
        return Q(buy_client_id=value) | Q(sell_client_id=value)


class VenueRefFilter(ChosenValueFilter):
    """The trades of one venue event, e.g. an auction: ``?venue_ref=auction-42``."""

    title = "venue reference"
    parameter_name = "venue_ref"

    def condition(self, value: str) -> Q:
        return Q(venue_ref=value)


def client_trades_link(client: Client, text: str = "fills") -> str:
    """A link to the client's trades, bought or sold."""
    return changelist_link(Trade, text, **{ClientFilter.parameter_name: client.pk})


def venue_trades_link(venue: str, venue_ref: str, text: str = "trades") -> str:
    """A link to the trades of one venue event (an auction's ``auction-42``)."""
    return changelist_link(Trade, text, **{"venue__exact": venue, VenueRefFilter.parameter_name: venue_ref})


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    """The trade ledger, newest first: filter by client (either side) or venue event, search by either
    side's client address, order id or the venue's event (``auction-42``)."""

    list_display = ["id", "executed_at", "contract", "sequence", "price", "quantity", "buy_client", "sell_client",
                    "buy_order_id", "sell_order_id", "venue", "venue_ref"]
    list_filter = [ClientFilter, "venue", VenueRefFilter, "contract__expiry_date", "contract"]
    list_select_related = ["contract", "buy_client", "sell_client"]
    search_fields = ["buy_client__address", "sell_client__address", "venue_ref", "=buy_order__id", "=sell_order__id"]
    ordering = ["-id"]
    raw_id_fields = ["buy_order", "sell_order"]
    show_full_result_count = False
