from django.contrib import admin

from ccp.accounts.models import ApiToken, Client, FundLock, SignInChallenge
from ccp.accounts.services import api_token_revoke
from ccp.admin_utils import ReadOnlyAdmin, ReadOnlyInline, money_plain
from ccp.clearing.admin import client_trades_link
from ccp.clock import utcnow
from ccp.matching.admin import auction_holds, fund_locks_with_auction_holds
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import ChainBalance


@admin.display(description="available")
def available(fund_lock: FundLock) -> str:
    return money_plain(fund_lock.available)


def _chain_balance(fund_lock: FundLock) -> ChainBalance | None:
    try:
        return fund_lock.chain_balance
    except ChainBalance.DoesNotExist:
        return None


@admin.display(description="on chain")
def on_chain(fund_lock: FundLock) -> str:
    """What the contract held at the last reconciliation ("-": not compared yet)."""
    seen = _chain_balance(fund_lock)
    return money_plain(seen and seen.balance)


@admin.display(description="chain - fundlock")
def chain_difference(fund_lock: FundLock) -> str:
    """The drift the last reconciliation saw: zero when the backend and the chain agree."""
    seen = _chain_balance(fund_lock)
    return money_plain(seen and seen.difference)


@admin.display(description="reconciled at")
def reconciled_at(fund_lock: FundLock) -> str:
    seen = _chain_balance(fund_lock)
    return "-" if seen is None else f"block {seen.block_number}, {seen.seen_at:%Y-%m-%d %H:%M:%S} UTC"


class FundLockInline(ReadOnlyInline):
    model = FundLock
    fields = ["currency", "fundlock", on_chain, chain_difference, "settle_value", "order_value", auction_holds,
              "lockup_value", available, "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return fund_locks_with_auction_holds(super().get_queryset(request).select_related("currency", "chain_balance"))


class PositionInline(ReadOnlyInline):
    model = Position
    fields = ["contract", "quantity", "updated_at"]
    readonly_fields = fields


class LockupInline(ReadOnlyInline):
    model = Lockup
    fields = ["pair", "expiry_date", "currency", "amount", "updated_at"]
    readonly_fields = fields


@admin.register(Client)
class ClientAdmin(ReadOnlyAdmin):
    """Clients register themselves by depositing on chain; the webconsole shows them."""

    list_display = ["checksum_address", "registered_at", "fills"]
    readonly_fields = ["fills"]
    search_fields = ["address"]
    ordering = ["-id"]
    inlines = [FundLockInline, PositionInline, LockupInline]

    @admin.display(description="fills")
    def fills(self, client: Client) -> str:
        """Its trades on either side, in the trade ledger."""
        return client_trades_link(client)

    def get_search_results(self, request, queryset, search_term):
        # Addresses are stored lower-case; operators paste them checksummed.
        return super().get_search_results(request, queryset, search_term.lower())


@admin.register(FundLock)
class FundLockAdmin(ReadOnlyAdmin):
    list_display = ["client", "currency", "fundlock", on_chain, chain_difference, reconciled_at, "settle_value",
                    "order_value", auction_holds, "lockup_value", available, "updated_at"]
    list_filter = ["currency"]
    list_select_related = ["client", "currency", "chain_balance"]
    search_fields = ["client__address"]

    def get_queryset(self, request):
        return fund_locks_with_auction_holds(super().get_queryset(request))


@admin.register(SignInChallenge)
class SignInChallengeAdmin(ReadOnlyAdmin):
    list_display = ["nonce", "address", "issued_at", "expires_at", "used_at"]
    search_fields = ["address", "nonce"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "client", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["client"]
    search_fields = ["client__address", "prefix"]
    actions = ["revoke"]
    exclude = ["key_hash"]

    @admin.action(description="Revoke the selected tokens (sign those sessions out)")
    def revoke(self, request, queryset):
        now = utcnow()
        for api_token in queryset:
            api_token_revoke(api_token=api_token, now=now)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")

    def has_change_permission(self, request, obj=None):
        # The revoke action needs change permission; the form itself shows no editable field.
        return request.user.has_perm("accounts.change_apitoken")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "key_hash"]
