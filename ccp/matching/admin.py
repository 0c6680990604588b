import json
from collections import defaultdict
from decimal import Decimal

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ccp.admin_utils import ChosenValueFilter, ReadOnlyAdmin, changelist_link, money_plain, related_link
from ccp.clearing.admin import ClientFilter, venue_trades_link
from ccp.clearing.models import Venue
from ccp.matching.auction import auction_gap, canonical_json
from ccp.matching.charts import supply_demand_svg
from ccp.matching.models import Auction, AuctionReservation

CHART_LIMIT = 40  # contracts drawn per auction


@admin.register(Auction)
class AuctionAdmin(ReadOnlyAdmin):
    list_display = ["id", "group", "slot", "state", "status", "orders_count", "fills_count", "welfare", "upper_bound",
                    "gap", "seconds", "trades"]
    list_filter = ["state", "status", "group"]
    date_hierarchy = "slot"
    fields = ["group", "slot", "state", "status", "solver", "orders_count", "fills_count", "welfare", "upper_bound",
              "gap", "trades", "reservations", "timings", "dropped", "input_hash", "documents", "charts", "opened_at",
              "closed_at", "solved_at", "applied_at"]
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

    @admin.display(description="reservations")
    def reservations(self, auction: Auction) -> str:
        """How many clients' free collateral its close set aside, how many of them bound, the total per
        currency and what of it is still held (until its apply), with a link to the list."""
        totals = (auction.reservations.values("currency__symbol").order_by("currency__symbol")
                  .annotate(rows=Count("id"), bound_rows=Count("id", filter=Q(bound=True)), total=Sum("amount"),
                            still_held=Sum("amount", filter=Q(released_at__isnull=True), default=Decimal(0))))
        if not totals:
            return "none"
        count, bound = sum(t["rows"] for t in totals), sum(t["bound_rows"] for t in totals)
        amounts = format_html_join("; ", "{} {} reserved, {} still held",
                                   ((money_plain(t["total"]), t["currency__symbol"], money_plain(t["still_held"]))
                                    for t in totals))
        return format_html("{} ({} bound): {}", reservations_link(auction, f"{count} reservations"), bound, amounts)

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


class AuctionFilter(ChosenValueFilter):
    """The reservations of one auction: ``?auction=<auction id>`` (the auction's page links to it)."""

    title = "auction"
    parameter_name = "auction"

    def label(self, value: str) -> str:
        found = Auction.objects.filter(pk=value).values_list("group", "state").first() if value.isdigit() else None
        return f"auction {value} (none)" if found is None else f"auction {value} {found[0]} ({found[1]})"

    def condition(self, value: str) -> Q:
        return Q(auction_id=value) if value.isdigit() else Q(pk__in=[])


class ReservationClientFilter(ClientFilter):
    """The reservations of one client: ``?client=<client id>`` (its fund locks link to them)."""

    title = "client"

    def condition(self, value: str) -> Q:
        return Q(client_id=value) if value.isdigit() else Q(pk__in=[])


class ReleasedFilter(admin.SimpleListFilter):
    """Reservations still counted in their clients' order value (their auction not applied yet) or released."""

    title = "released"
    parameter_name = "released"

    def lookups(self, request, model_admin):
        return [("no", "no: still held"), ("yes", "yes")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(released_at__isnull=self.value() == "no")
        return queryset


def reservations_link(auction: Auction, text: str = "reservations") -> str:
    """A link to the reservations of one auction."""
    return changelist_link(AuctionReservation, text, **{AuctionFilter.parameter_name: auction.pk})


def fund_locks_with_auction_holds(queryset: QuerySet) -> QuerySet:
    """Fund locks with ``auction_holds``: what auctions between their close and apply hold of each (part of
    its order value), in the list's one query."""
    holds = (AuctionReservation.objects.filter(client_id=OuterRef("client_id"), currency_id=OuterRef("currency_id"),
                                               released_at__isnull=True)
             .order_by().values("client_id").annotate(total=Sum("amount")).values("total"))
    return queryset.annotate(auction_holds=Subquery(holds))


@admin.display(description="of which auctions hold")
def auction_holds(fund_lock) -> str:
    """The part of a fund lock's order value that auctions not yet applied reserved, linked to those
    reservations (a fund lock read through ``fund_locks_with_auction_holds``)."""
    amount = getattr(fund_lock, "auction_holds", None)
    if not amount:
        return "-"
    return changelist_link(AuctionReservation, money_plain(amount), **{
        ReservationClientFilter.parameter_name: fund_lock.client_id, "currency__id__exact": fund_lock.currency_id,
        ReleasedFilter.parameter_name: "no"})


@admin.register(AuctionReservation)
class AuctionReservationAdmin(ReadOnlyAdmin):
    """Free collateral each auction set aside at its close, per client and currency, newest first: counted in
    the client's order value (so not available) until the auction's apply releases it. A reservation still
    held whose auction is not applied explains a client's low available collateral; ``held since`` says for
    how long. Filter by auction (``?auction=42``) or client (``?client=7``), search by client address or id."""

    list_display = ["id", related_link("auction", "auction"), "auction_state", "held_since", "client", "currency",
                    "amount", "held", "standalone", "bound", "released_at"]
    fields = [related_link("auction", "auction"), "auction_state", "held_since", "client", "currency", "amount",
              "held", "standalone", "bound", "released_at"]
    readonly_fields = fields
    list_filter = [ReleasedFilter, "bound", "currency", "auction__state", AuctionFilter, ReservationClientFilter]
    list_select_related = ["auction", "client", "currency"]
    search_fields = ["client__address"]  # and a client id (get_search_results)
    ordering = ["-id"]
    show_full_result_count = False

    def get_queryset(self, request):
        # The auction's documents run to megabytes: its state and times are all the list shows. (The list
        # applies list_select_related only to a queryset without select_related: it is given here.)
        return super().get_queryset(request).select_related(*self.list_select_related).defer(
            "auction__input_document", "auction__result_document", "auction__order_ids")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()  # addresses are stored lower-case; operators paste them checksummed
        if term.isdigit():  # a client's id, never a piece of an address
            return queryset.filter(client_id=term), False
        return super().get_search_results(request, queryset, term)

    @admin.display(description="auction state", ordering="auction__state")
    def auction_state(self, reservation: AuctionReservation) -> str:
        return reservation.auction.get_state_display()

    @admin.display(description="held since", ordering="auction__closed_at")
    def held_since(self, reservation: AuctionReservation):
        """The auction's close, which took it; "-" once released."""
        return "-" if reservation.released_at is not None else reservation.auction.closed_at
