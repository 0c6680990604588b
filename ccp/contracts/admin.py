from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ccp.admin_utils import ReadOnlyAdmin, ReadOnlyInline, service_form_view
from ccp.clock import utcnow
from ccp.contracts.models import Contract, Currency, Pair, TradingMode, TradingModeChange
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.services import SeriesSpec, contract_series_create, contract_trading_mode_set
from ccp.errors import ApplicationError
from ccp.money import DECIMAL_PLACES, MAX_DIGITS
from ccp.orders.states import OPEN_STATES


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
    kinds = forms.MultipleChoiceField(choices=[(k.value, k.value) for k in ContractKind
                                               if k is not ContractKind.PERPETUAL],
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


# How the admin says a mode: "X now trades continuously".
TRADES = {TradingMode.AUCTION: "in auctions", TradingMode.CONTINUOUS: "continuously"}


class TradingModeForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 60}),
                             help_text="kept with the change in Trading mode changes")


class TradingModeChangeInline(ReadOnlyInline):
    model = TradingModeChange
    fields = ["at", "from_mode", "to_mode", "changed_by", "reason", "orders_cancelled"]
    readonly_fields = fields
    ordering = ["-at", "-id"]
    show_change_link = False


@admin.register(Contract)
class ContractAdmin(ReadOnlyAdmin):
    """Contracts are listed through the series form and never edited: open orders rely on their terms.
    Their trading mode moves through the actions (``contract_trading_mode_set``), each change kept."""

    list_display = ["symbol", "pair", "kind", "strike_px", "expiry_date", "floor_px", "cap_px", "tick_size",
                    "lot_size", "state", "trading_mode"]
    list_filter = ["state", "trading_mode", "kind", "expiry_date", "pair"]
    list_select_related = ["pair__base", "pair__quote"]
    search_fields = ["symbol"]
    date_hierarchy = "expiry_date"
    actions = ["trade_continuously", "trade_in_auctions"]
    inlines = [TradingModeChangeInline]

    @admin.action(description="Trade continuously (cancels their open orders)", permissions=["trading_mode"])
    def trade_continuously(self, request, queryset):
        return self._trading_mode_set(request, queryset, TradingMode.CONTINUOUS, "trade_continuously")

    @admin.action(description="Trade in auctions (cancels their open orders)", permissions=["trading_mode"])
    def trade_in_auctions(self, request, queryset):
        return self._trading_mode_set(request, queryset, TradingMode.AUCTION, "trade_in_auctions")

    def _trading_mode_set(self, request, queryset, mode: TradingMode, action: str):
        """An intermediate page names the contracts and the open orders the change cancels and asks why;
        then each contract is moved on its own (one refused does not stop the others)."""
        contracts = list(queryset.annotate(open_orders=Count("orders", filter=Q(orders__state__in=OPEN_STATES)))
                         .order_by("symbol"))
        form = TradingModeForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                       "contracts": contracts, "mode": mode, "action": action,
                       "title": f"Trade {len(contracts)} contract(s) {TRADES[mode]}",
                       "action_checkbox_name": ACTION_CHECKBOX_NAME}
            return TemplateResponse(request, "admin/contracts/contract/trading_mode.html", context)
        for contract in contracts:
            if contract.trading_mode == mode:
                self.message_user(request, f"{contract.symbol} already trades {TRADES[mode]}.", messages.INFO)
                continue
            try:
                contract_trading_mode_set(contract_id=contract.pk, mode=mode, by=request.user.get_username(),
                                          reason=form.cleaned_data["reason"], now=utcnow())
            except ApplicationError as exc:
                self.message_user(request, f"{contract.symbol}: {exc.message} ({exc.code})", messages.ERROR)
                continue
            change = contract.trading_mode_changes.order_by("-id").first()
            self.message_user(request, f"{contract.symbol} now trades {TRADES[mode]}; "
                                       f"{change.orders_cancelled} open order(s) cancelled.", messages.SUCCESS)
        return None

    def has_trading_mode_permission(self, request):
        return request.user.has_perm("contracts.change_contract")

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

        def submit(form):
            created = contract_series_create(spec=form.spec(), now=utcnow())
            names = ", ".join(c.symbol for c in created) or "nothing new (all already listed)"
            return created, f"Listed {len(created)} contract(s): {names}"

        return service_form_view(self, request, SeriesForm(request.POST or None), title="List an expiry series",
                                 template="admin/contracts/series_form.html", submit=submit,
                                 done_url=reverse("admin:contracts_contract_changelist"))


@admin.register(TradingModeChange)
class TradingModeChangeAdmin(ReadOnlyAdmin):
    """Every change of a contract's trading mode, newest first: who, why, and the orders it cancelled."""

    list_display = ["at", "contract", "from_mode", "to_mode", "changed_by", "reason", "orders_cancelled"]
    list_filter = ["to_mode", "contract__pair", "contract__expiry_date"]
    list_select_related = ["contract"]
    search_fields = ["contract__symbol", "changed_by", "reason"]
    ordering = ["-at", "-id"]
