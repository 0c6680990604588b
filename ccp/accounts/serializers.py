from rest_framework import serializers

from ccp.accounts.models import FundLock
from ccp.serializers import MoneyField, SignedMoneyField


class BalanceSerializer(serializers.ModelSerializer):
    """A client's collateral in one currency; available = fundlock + settle_value - order_value - lockups -
    margin."""

    currency = serializers.CharField(source="currency.symbol", read_only=True)
    fundlock = MoneyField(read_only=True)
    order_value = MoneyField(read_only=True)
    settle_value = SignedMoneyField(read_only=True)
    lockups = MoneyField(source="lockup_value", read_only=True)
    margin = SignedMoneyField(source="margin_value", read_only=True,
                              help_text="held by perpetual positions: their margins, less the cash they already paid")
    available = MoneyField(read_only=True)

    class Meta:
        model = FundLock
        fields = ["currency", "fundlock", "settle_value", "order_value", "lockups", "margin", "available",
                  "updated_at"]


class StatementTotalsSerializer(serializers.Serializer):
    """Per currency: the total of each kind of line, their sum, and the balance (fundlock + settle value)."""

    currency = serializers.CharField()
    deposit = MoneyField(help_text="deposits seen on chain")
    auction = SignedMoneyField(help_text="premiums paid and received in auctions")
    book = SignedMoneyField(help_text="premiums paid and received on the continuous book (a perpetual's: its "
                                      "trades' cash relative to its reference price)")
    expiry = SignedMoneyField(help_text="payoffs at expiry")
    withdrawal = SignedMoneyField(help_text="withdrawals (negative)")
    adjustment = SignedMoneyField(help_text="operator adjustments")
    variation = SignedMoneyField(help_text="perpetuals: positions settled to the mark at each funding time")
    funding = SignedMoneyField(help_text="perpetuals: funding paid (negative) or received")
    liquidation = SignedMoneyField(help_text="perpetuals: takeover and ADL trades at the bankruptcy price")
    liquidation_fee = SignedMoneyField(help_text="perpetuals: liquidation fees paid (negative) or received")
    insurance = SignedMoneyField(help_text="perpetuals: a loss beyond your collateral the insurance fund covered")
    total = SignedMoneyField(help_text="the sum of the above")
    balance = SignedMoneyField(help_text="fundlock + settle value")
    unrecorded = SignedMoneyField(help_text="balance - total: credits made outside the chain monitor (demo only); "
                                            "0 otherwise")


class StatementLineSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["deposit", "auction", "book", "expiry", "withdrawal", "adjustment",
                                            "variation", "funding", "liquidation", "liquidation_fee",
                                            "insurance"])
    ref = serializers.CharField(help_text="the deposit's transaction hash, or the auction, expiry or withdrawal")
    contract = serializers.CharField(allow_null=True)
    amount = SignedMoneyField(help_text="signed: positive credits you")
    position_delta = SignedMoneyField(help_text="signed position change paid for (trades and expiry)")
    at = serializers.DateTimeField()
