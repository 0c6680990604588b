from rest_framework import generics, serializers

from ccp.clock import utcnow
from ccp.query import PAGE_PARAMS, query_check
from ccp.risk.models import Lockup, Position
from ccp.risk.selectors import positions_marked, positions_of
from ccp.serializers import MoneyField, SignedMoneyField


class PositionSerializer(serializers.ModelSerializer):
    contract = serializers.CharField(source="contract.symbol")
    quantity = SignedMoneyField(read_only=True, help_text="signed: positive long, negative short")
    entry_price = MoneyField(read_only=True, allow_null=True,
                             help_text="average price of the open quantity; null when flat")
    mark_price = MoneyField(read_only=True, allow_null=True,
                            help_text="the contract's mark price (GET /contracts); null without a fresh index")
    unrealised_pnl = SignedMoneyField(read_only=True, allow_null=True,
                                      help_text="quantity x (mark - entry); null without a mark price")
    realised_pnl = SignedMoneyField(read_only=True, help_text="PnL of the quantity closed so far")

    class Meta:
        model = Position
        fields = ["contract", "quantity", "entry_price", "mark_price", "unrealised_pnl", "realised_pnl", "updated_at"]


class LockupSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(source="pair.__str__")
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Lockup
        fields = ["underlying", "expiry_date", "currency", "amount", "updated_at"]


class PositionsApi(generics.ListAPIView):
    """Your positions: every open one, and those you closed on contracts not yet settled (their
    realised PnL), with entry price, mark price and PnL. Realised + unrealised PnL = the position's
    cash movements + quantity x the premium at the mark price (a future's premium is its price less
    the floor, prepaid)."""

    serializer_class = PositionSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return positions_of(client_id=self.request.user.pk)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else positions_marked(page, now=utcnow())


class LockupsApi(generics.ListAPIView):
    """Collateral locked for each of your (expiry, underlying) portfolios."""

    serializer_class = LockupSerializer

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return (Lockup.objects.filter(client=self.request.user)
                .select_related("pair__base", "pair__quote", "currency").order_by("expiry_date", "pair_id"))
