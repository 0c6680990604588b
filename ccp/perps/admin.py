import json
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ccp.accounts.admin import available
from ccp.admin_utils import ReadOnlyAdmin, service_form_view
from ccp.clock import utcnow
from ccp.contracts.models import Currency, Pair
from ccp.money import DECIMAL_PLACES, MAX_DIGITS, money_str, quantize
from ccp.perps.models import (
    Funding,
    InsuranceFundBalance,
    InsuranceFundMovement,
    Liquidation,
    MarkPrice,
    Perpetual,
    PositionAtRisk,
    tiers_parse,
)
from ccp.perps.services import perpetual_list
from ccp.perps.watch import positions_nearest_liquidation

TIERS_EXAMPLE = ('[{"up_to": "10", "rate": "0.005", "max_leverage": "100"}, '
                 '{"up_to": null, "rate": "0.01", "max_leverage": "50"}]')


def _money(label: str, **kwargs) -> forms.DecimalField:
    return forms.DecimalField(label=label, max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


class PerpetualForm(forms.Form):
    pair = forms.ModelChoiceField(queryset=Pair.objects.select_related("base", "quote"))
    collateral = forms.ModelChoiceField(queryset=Currency.objects.all(), help_text="the pair's quote currency")
    floor_px = _money("Lowest order price", min_value=Decimal(0))
    cap_px = _money("Highest order price", min_value=Decimal(0))
    tick_size = _money("Tick size", min_value=Decimal(0))
    lot_size = _money("Lot size", min_value=Decimal(0))
    tiers = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), initial=TIERS_EXAMPLE,
                            help_text="maintenance tiers by position size (base units), as JSON")
    liquidation_fee_rate = _money("Liquidation fee rate", min_value=Decimal(0), initial=Decimal("0.002"))
    funding_cap = _money("Funding cap per interval", min_value=Decimal(0), initial=Decimal("0.0075"))

    def clean_tiers(self):
        try:
            return tiers_parse(json.loads(self.cleaned_data["tiers"]))
        except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
            raise ValidationError(f"Tiers must be a JSON list like {TIERS_EXAMPLE} ({exc}).") from None


@admin.register(Perpetual)
class PerpetualAdmin(ReadOnlyAdmin):
    """Perpetuals with their margin terms and latest mark; listed through the form, never edited."""

    list_display = ["contract", "mark_px", "index_px", "basis", "marked_at", "settle_px", "liquidation_fee_rate",
                    "funding_cap", "tiers"]
    list_select_related = ["contract"]

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("contracts.add_contract")

    def get_urls(self):
        listing = path("list/", self.admin_site.admin_view(self.list_view), name="perps_perpetual_list")
        return [listing, *super().get_urls()]

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("admin:perps_perpetual_list")

    def list_view(self, request):
        if not self.has_add_permission(request):
            return redirect("admin:index")

        def submit(form):
            contract = perpetual_list(**form.cleaned_data, now=utcnow())
            return [contract], f"Listed {contract.symbol}"

        return service_form_view(self, request, PerpetualForm(request.POST or None), title="List a perpetual",
                                 template="admin/perps/perpetual_form.html", submit=submit,
                                 done_url=reverse("admin:perps_perpetual_changelist"))


@admin.register(MarkPrice)
class MarkPriceAdmin(ReadOnlyAdmin):
    """Every price update of every perpetual: index, damped basis, mark (funding averages their premium)."""

    list_display = ["at", "contract", "index_px", "basis", "mark_px"]
    list_filter = ["contract"]
    list_select_related = ["contract"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]


@admin.register(Liquidation)
class LiquidationAdmin(ReadOnlyAdmin):
    """Every liquidation step, newest first: what the engine saw, what it did (an order on the book, the insurance
    fund's takeover, ADL against a counterparty), the order and the fee its fills paid."""

    list_display = ["at", "contract", "client", "kind", "mark_px", "quantity", "equity", "requirement", "size",
                    "bankruptcy_px", "fee", "counterparty", "order"]
    list_filter = ["kind", "contract"]
    list_select_related = ["contract", "client", "order", "counterparty"]
    search_fields = ["client__address", "counterparty__address"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]


@admin.register(InsuranceFundBalance)
class InsuranceFundBalanceAdmin(ReadOnlyAdmin):
    """The insurance fund's balance per collateral currency (its fund locks, CCP_INSURANCE_FUND_ADDRESS)."""

    list_display = ["currency", "fundlock", "settle_value", "margin_value", available, "updated_at"]
    list_select_related = ["client", "currency"]


@admin.register(InsuranceFundMovement)
class InsuranceFundMovementAdmin(ReadOnlyAdmin):
    """The insurance fund's cash movements, newest first: fees in, takeovers, its unwinds, variation and funding."""

    list_display = ["created_at", "currency", "amount", "origin", "origin_ref", "contract", "position_delta"]
    list_filter = ["origin", "currency"]
    list_select_related = ["currency", "contract"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]


@admin.register(Funding)
class FundingAdmin(ReadOnlyAdmin):
    """The funding history: each funding time of each perpetual, its rate, mark and what was paid."""

    list_display = ["at", "contract", "rate", "mark_px", "samples", "paid", "settled_at"]
    list_filter = ["contract"]
    list_select_related = ["contract"]
    date_hierarchy = "at"
    ordering = ["-at", "contract_id"]


@admin.register(PositionAtRisk)
class PositionAtRiskAdmin(ReadOnlyAdmin):
    """The 100 perpetual positions nearest liquidation at their perpetual's latest mark, isolated and cross."""

    def changelist_view(self, request, extra_context=None):
        rows = [{"contract": r.contract, "client": r.client, "mode": r.mode, "quantity": money_str(r.quantity),
                 "entry": money_str(quantize(r.entry_px, ROUND_HALF_EVEN)), "mark": money_str(r.mark_px),
                 "liquidation": "none" if r.liquidation_px is None else money_str(r.liquidation_px),
                 "distance": "" if r.distance is None else f"{r.distance * 100:.2f}%"}
                for r in positions_nearest_liquidation(limit=100)]
        context = {**self.admin_site.each_context(request), "title": "Positions nearest liquidation",
                   "opts": self.model._meta, "rows": rows}
        return TemplateResponse(request, "admin/perps/positions_at_risk.html", context)
