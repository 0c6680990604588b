from decimal import Decimal

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from ccp.contracts.models import Contract, TradingMode
from ccp.contracts.payoffs import mark_px
from ccp.money import money_str
from ccp.serializers import MoneyField


class ContractSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(source="pair.__str__", read_only=True)
    collateral = serializers.CharField(source="collateral.symbol", read_only=True)
    strike_px = MoneyField(read_only=True, allow_null=True)
    floor_px = MoneyField(read_only=True)
    cap_px = MoneyField(read_only=True)
    tick_size = MoneyField(read_only=True)
    lot_size = MoneyField(read_only=True)
    price_min = MoneyField(read_only=True,
                           help_text="lowest valid order price: one tick above the lowest value the contract can have")
    price_max = MoneyField(read_only=True,
                           help_text="highest valid order price: one tick below the most the contract can be worth")
    reference_price = serializers.SerializerMethodField(
        help_text="the last clearing price, or the initial price before the first match; null if neither")
    index_price = serializers.SerializerMethodField(
        help_text="the underlying's index (GET /api/v1/index); null when no venue price is fresh")
    mark_price = serializers.SerializerMethodField(
        help_text="a future: the index clamped to [floor, cap]; an option: its intrinsic value at the index (no "
                  "volatility model yet: a lower bound of its worth); a perpetual: the index plus its damped "
                  "basis at the last price update; null without a fresh index")
    perpetual = serializers.SerializerMethodField(
        help_text="a perpetual's margin terms (null for a dated contract): maintenance tiers by position size "
                  "(base units; up_to null: any size), the highest leverage, the liquidation fee rate and the "
                  "funding cap per interval")
    trading_mode = serializers.ChoiceField(
        choices=TradingMode.choices, read_only=True,
        help_text="auction: matched in the pair's periodic batch auctions; continuous: on the order book as orders "
                  "arrive. The operator moves a contract between the two, cancelling its open orders.")
    expires_at = serializers.DateTimeField(read_only=True)
    trading_ends_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Contract
        fields = ["symbol", "underlying", "collateral", "kind", "strike_px", "expiry_date", "expires_at",
                  "trading_ends_at", "floor_px", "cap_px", "tick_size", "lot_size", "price_min", "price_max",
                  "reference_price", "index_price", "mark_price", "state", "trading_mode", "perpetual"]

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_reference_price(self, contract: Contract) -> str | None:
        latest = contract.latest_reference_price
        return None if latest is None else money_str(latest)

    def _index(self, contract: Contract) -> Decimal | None:
        """The index of the contract's pair, from the view's ``indices`` (pair id -> price)."""
        return self.context.get("indices", {}).get(contract.pair_id)

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_index_price(self, contract: Contract) -> str | None:
        index = self._index(contract)
        return None if index is None else money_str(index)

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_mark_price(self, contract: Contract) -> str | None:
        index = self._index(contract)
        if index is None:
            return None
        if contract.is_perpetual:
            mark = contract.perpetual.mark_px
            return None if mark is None else money_str(mark)
        return money_str(mark_px(contract.terms, index))

    @extend_schema_field(inline_serializer("PerpetualTerms", {
        "max_leverage": MoneyField(), "liquidation_fee_rate": MoneyField(), "funding_cap": MoneyField(),
        "tiers": inline_serializer("MaintenanceTier", {
            "up_to": MoneyField(allow_null=True), "rate": MoneyField(), "max_leverage": MoneyField()}, many=True)},
        allow_null=True))
    def get_perpetual(self, contract: Contract) -> dict | None:
        if not contract.is_perpetual:
            return None
        terms = contract.perpetual
        return {"max_leverage": money_str(terms.max_leverage), "tiers": terms.tiers,
                "liquidation_fee_rate": money_str(terms.liquidation_fee_rate),
                "funding_cap": money_str(terms.funding_cap)}
