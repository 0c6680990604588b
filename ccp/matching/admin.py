import json
from collections import defaultdict
from decimal import Decimal

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ccp.admin_utils import ReadOnlyAdmin
from ccp.clearing.admin import venue_trades_link
from ccp.clearing.models import Venue
from ccp.matching.auction import auction_gap, canonical_json
from ccp.matching.charts import supply_demand_svg
from ccp.matching.models import Auction

CHART_LIMIT = 40  # contracts drawn per auction


@admin.register(Auction)
class AuctionAdmin(ReadOnlyAdmin):
    list_display = ["id", "group", "slot", "state", "status", "orders_count", "fills_count", "welfare", "upper_bound",
                    "gap", "seconds", "trades"]
    list_filter = ["state", "status", "group"]
    date_hierarchy = "slot"
    fields = ["group", "slot", "state", "status", "solver", "orders_count", "fills_count", "welfare", "upper_bound",
              "gap", "trades", "timings", "dropped", "input_hash", "documents", "charts", "opened_at", "closed_at",
              "solved_at", "applied_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        # Documents and the snapshot's ids run to megabytes: loaded only when the page shows them.
        return super().get_queryset(request).defer("input_document", "result_document", "order_ids")

    @admin.display(description="gap")
    def gap(self, auction: Auction) -> str:
        if auction.welfare is None or auction.upper_bound is None:
            return "-"
        return format(auction_gap(auction.welfare, auction.upper_bound).quantize(Decimal("1e-9")), "f")

    @admin.display(description="trades")
    def trades(self, auction: Auction) -> str:
        return venue_trades_link(Venue.AUCTION, auction.ref)

    @admin.display(description="seconds")
    def seconds(self, auction: Auction) -> str:
        total = (auction.timings or {}).get("total_s")
        return "-" if total is None else f"{total:.3f}"

    @admin.display(description="documents")
    def documents(self, auction: Auction) -> str:
        links = [(reverse("admin:matching_auction_document", args=[auction.pk, name]), f"{name}.json")
                 for name, doc in (("input", auction.input_document), ("result", auction.result_document))
                 if doc is not None]
        help_text = "replay: manage.py auction_replay input.json"
        return format_html("{} <span class='help'>{}</span>", format_html_join(" ", '<a href="{}">{}</a> ', links),
                           help_text)

    @admin.display(description="supply and demand")
    def charts(self, auction: Auction) -> str:
        if not auction.input_document:
            return "-"
        by_contract = defaultdict(list)
        for order in auction.input_document["orders"]:
            by_contract[order["contract"]].append(order)
        result = auction.result_document or {"prices": {}, "fills": []}
        volume = defaultdict(Decimal)
        side = {o["id"]: (o["contract"], o["side"]) for o in auction.input_document["orders"]}
        for fill in result["fills"]:
            contract, order_side = side[fill["order"]]
            if order_side == "buy":
                volume[contract] += Decimal(fill["quantity"])
        charts = [supply_demand_svg(symbol, orders, Decimal(result["prices"][symbol]) if symbol in result["prices"]
                                    else None, volume[symbol])
                  for symbol, orders in sorted(by_contract.items())[:CHART_LIMIT]]
        # The SVG is built by our own code from escaped text and numbers.
        return mark_safe("".join(charts)) or "-"  # noqa: S308

    def get_urls(self):
        return [path("<int:pk>/<str:name>.json", self.admin_site.admin_view(self.document_view),
                     name="matching_auction_document"), *super().get_urls()]

    def document_view(self, request, pk: int, name: str):
        auction = Auction.objects.filter(pk=pk).first()
        if auction is None or name not in ("input", "result") or not self.has_view_permission(request, auction):
            raise Http404
        document = auction.input_document if name == "input" else auction.result_document
        if document is None:
            raise Http404
        # The input as its canonical text, the very bytes its hash covers; the result indented.
        body = canonical_json(document) if name == "input" else json.dumps(document, indent=2)
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="auction-{pk}-{name}.json"'
        return response
