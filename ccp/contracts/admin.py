from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ccp.admin_utils import ReadOnlyAdmin
from ccp.clock import utcnow
from ccp.contracts.models import Contract, Currency, Pair
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.services import SeriesSpec, contract_series_create
from ccp.errors import ApplicationError
from ccp.money import DECIMAL_PLACES, MAX_DIGITS


class CurrencyForm(forms.ModelForm):
    class Meta:
        model = Currency
        fields = ["symbol", "name", "decimals", "token_address"]

    def clean_symbol(self):
        return self.cleaned_data["symbol"].strip().upper()

    def clean_token_address(self):
        value = (self.cleaned_data.get("token_address") or "").strip().lower()
        return value or None


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    form = CurrencyForm
    list_display = ["symbol", "name", "decimals", "token_address"]
    search_fields = ["symbol", "name"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["__str__", "base", "quote"]
    list_select_related = ["base", "quote"]


def _money_field(label: str, **kwargs) -> forms.DecimalField:
    return forms.DecimalField(label=label, max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


class SeriesForm(forms.Form):
    """List an expiry series: one pair and expiry, any kinds, a set of strikes."""

    pair = forms.ModelChoiceField(queryset=Pair.objects.select_related("base", "quote"))
    collateral = forms.ModelChoiceField(queryset=Currency.objects.all(), help_text="the pair's quote currency")
    expiry_date = forms.DateField(help_text="YYYY-MM-DD; contracts expire at 12:00 UTC and halt from 00:00 UTC",
                                  widget=forms.DateInput(attrs={"type": "date"}))
    kinds = forms.MultipleChoiceField(choices=[(k.value, k.value) for k in ContractKind],
                                      widget=forms.CheckboxSelectMultiple, initial=["call", "put"])
    strikes = forms.CharField(required=False, help_text="for calls and puts, separated by commas or spaces",
                              widget=forms.TextInput(attrs={"size": 60}))
    floor_px = _money_field("Floor price", min_value=Decimal(0))
    cap_px = _money_field("Cap price", min_value=Decimal(0))
    tick_size = _money_field("Tick size", min_value=Decimal(0))
    lot_size = _money_field("Lot size", min_value=Decimal(0))

    def clean_strikes(self) -> tuple[Decimal, ...]:
        strikes = []
        for part in self.cleaned_data["strikes"].replace(",", " ").split():
            try:
                value = Decimal(part)
            except InvalidOperation:
                raise ValidationError(f"{part!r} is not a number.") from None
            if not value.is_finite():
                raise ValidationError(f"{part!r} is not a number.")
            strikes.append(value)
        return tuple(strikes)

    def spec(self) -> SeriesSpec:
        data = self.cleaned_data
        return SeriesSpec(
            pair=data["pair"], collateral=data["collateral"], expiry_date=data["expiry_date"],
            kinds=tuple(ContractKind(k) for k in data["kinds"]), strikes=data["strikes"], floor_px=data["floor_px"],
            cap_px=data["cap_px"], tick_size=data["tick_size"], lot_size=data["lot_size"],
        )


@admin.register(Contract)
class ContractAdmin(ReadOnlyAdmin):
    """Contracts are listed through the series form and never edited: open orders rely on their terms."""

    list_display = ["symbol", "pair", "kind", "strike_px", "expiry_date", "floor_px", "cap_px", "tick_size",
                    "lot_size", "state"]
    list_filter = ["state", "kind", "expiry_date", "pair"]
    list_select_related = ["pair__base", "pair__quote"]
    search_fields = ["symbol"]
    date_hierarchy = "expiry_date"

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("contracts.add_contract")

    def get_urls(self):
        series = path("series/", self.admin_site.admin_view(self.series_view), name="contracts_contract_series")
        return [series, *super().get_urls()]

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("admin:contracts_contract_series")

    def series_view(self, request):
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = SeriesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                created = contract_series_create(spec=form.spec(), now=utcnow())
            except ApplicationError as exc:
                form.add_error(None, f"{exc.message} ({exc.code})")
            else:
                for contract in created:
                    self.log_addition(request, contract, [{"added": {}}])
                names = ", ".join(c.symbol for c in created) or "nothing new (all already listed)"
                messages.success(request, f"Listed {len(created)} contract(s): {names}")
                return redirect(reverse("admin:contracts_contract_changelist"))
        context = {**self.admin_site.each_context(request), "title": "List an expiry series", "form": form,
                   "opts": self.model._meta, "media": self.media + form.media}
        return TemplateResponse(request, "admin/contracts/series_form.html", context)
