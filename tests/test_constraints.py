"""Every database constraint of the ccp apps rejects the rows it is there to reject.

Each bad row breaks exactly one rule: the test first saves a valid row (the baseline), then
inserts the bad variant and expects PostgreSQL to name the violated constraint. A completeness
test fails when a constraint (or a ``unique=True`` field) is added without a row here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal as D

import factory
import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from eth_account import Account

from ccp.accounts.models import ApiToken, SignInChallenge
from ccp.clearing.models import Trade
from ccp.contracts.models import TradingModeChange
from ccp.marketdata.models import Candle
from ccp.matching.models import Auction, AuctionReservation
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.states import TERMINAL_STATES, OrderState
from ccp.perps.models import Funding, Liquidation, MarkPrice, Perpetual
from ccp.prices.models import ReferencePrice, SpotPrice, VenueSymbol
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import (
    CashMovement,
    CashMovementTracking,
    ChainBalance,
    ChainContract,
    Deposit,
    OperatorNonce,
    SettlementBatch,
    Withdrawal,
)
from ccp.system.models import Edge, OperatorAlert
from tests.conftest import NOW
from tests.factories import ClientFactory, ContractFactory, CurrencyFactory, FundLockFactory, PairFactory

S = OrderState
UPPER_CASE_ADDRESS = "0x" + "AB" * 20  # well-formed but not lower-case
TX_HASH = "0x" + "cd" * 32
UPPER_CASE_TX_HASH = "0x" + "CD" * 32  # well-formed but not lower-case


# --- Factories that always insert, with fresh dependencies, so no row collides by accident ---


class NewCurrencyFactory(CurrencyFactory):
    class Meta:
        django_get_or_create = ()


class NewPairFactory(PairFactory):
    class Meta:
        django_get_or_create = ()

    base = factory.SubFactory(NewCurrencyFactory)
    quote = factory.SubFactory(NewCurrencyFactory)


class NewContractFactory(ContractFactory):
    """A BASE/QUOTE call struck at 100000 in [50000, 150000], on a pair of its own."""

    pair = factory.SubFactory(NewPairFactory)


class OrderFactory(factory.django.DjangoModelFactory):
    """An accepted buy of 1 at 1200, holding its 1200 of collateral."""

    class Meta:
        model = Order

    client = factory.SubFactory(ClientFactory)
    contract = factory.SubFactory(NewContractFactory)
    client_order_id = factory.Sequence(lambda n: f"order-{n}")
    side = "buy"
    price = D("1200")
    quantity = D("1")
    state = S.ACCEPTED
    order_value = D("1200")
    created_at = NOW
    updated_at = NOW


class OrderStateHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderStateHistory

    order = factory.SubFactory(OrderFactory)
    from_state = S.RECEIVED
    to_state = S.ACCEPTED
    at = NOW


class TradeFactory(factory.django.DjangoModelFactory):
    """An auction trade of 1 between a fresh buy order and a fresh sell order."""

    class Meta:
        model = Trade

    venue = "auction"
    venue_ref = factory.Sequence(lambda n: f"auction-{n}")
    contract = factory.SubFactory(NewContractFactory)
    sequence = factory.Sequence(lambda n: n + 1)
    price = D("1200")
    quantity = D("1")
    buy_order = factory.SubFactory(OrderFactory)
    buy_client = factory.SelfAttribute("buy_order.client")
    sell_order = factory.SubFactory(OrderFactory, side="sell")
    sell_client = factory.SelfAttribute("sell_order.client")
    executed_at = NOW


class CandleFactory(factory.django.DjangoModelFactory):
    """The 1m candle of trades 1 to 3 at 09:30: open 1200, high 1250, low 1100, close 1150."""

    class Meta:
        model = Candle

    contract = factory.SubFactory(NewContractFactory)
    interval = "1m"
    bucket_start = NOW
    open, high, low, close = D("1200"), D("1250"), D("1100"), D("1150")
    volume = D("3")
    trade_count = 3
    first_sequence = 1
    last_sequence = 3
    updated_at = NOW


class PositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Position

    client = factory.SubFactory(ClientFactory)
    contract = factory.SubFactory(NewContractFactory)
    quantity = D("-2")
    updated_at = NOW


class LockupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lockup

    client = factory.SubFactory(ClientFactory)
    pair = factory.SubFactory(NewPairFactory)
    expiry_date = date(2026, 12, 25)
    currency = factory.SelfAttribute("pair.quote")
    amount = D("500")
    updated_at = NOW


class CashMovementFactory(factory.django.DjangoModelFactory):
    """The buyer's side of an auction fill: pays 1200 premium for 1 contract."""

    class Meta:
        model = CashMovement

    client = factory.SubFactory(ClientFactory)
    contract = factory.SubFactory(NewContractFactory)
    currency = factory.Maybe(
        "contract",
        yes_declaration=factory.SelfAttribute("contract.collateral"),
        no_declaration=factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6),
    )
    amount = D("-1200")
    position_delta = D("1")
    origin = "auction"
    origin_ref = factory.Sequence(lambda n: f"auction-{n}")
    created_at = NOW


class CashMovementTrackingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CashMovementTracking

    cash_movement = factory.SubFactory(CashMovementFactory)
    state = "pending"
    batch_id = factory.Sequence(lambda n: f"0x{n:064x}")
    created_at = NOW
    updated_at = NOW


class SpotPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpotPrice

    pair = factory.SubFactory(NewPairFactory)
    source = "binance"
    price = D("97000")
    observed_at = NOW
    fetched_at = NOW


class PerpetualContractFactory(NewContractFactory):
    kind = "perpetual"
    strike_px = None
    expiry_date = None
    trading_mode = "continuous"


class PerpetualFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Perpetual

    contract = factory.SubFactory(PerpetualContractFactory)
    tiers = [{"up_to": None, "rate": "0.01", "max_leverage": "50"}]
    liquidation_fee_rate = D("0.002")
    funding_cap = D("0.0075")


class MarkPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MarkPrice

    contract = factory.SubFactory(PerpetualContractFactory)
    at = NOW
    index_px = D("97000")
    basis = D("10")
    mark_px = D("97010")


class FundingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Funding

    contract = factory.SubFactory(PerpetualContractFactory)
    at = NOW
    rate = D("0.0001")
    mark_px = D("97010")
    samples = 960
    paid = D("12.5")
    settled_at = NOW


class LiquidationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Liquidation

    order = factory.SubFactory(OrderFactory)
    contract = factory.SelfAttribute("order.contract")
    client = factory.SelfAttribute("order.client")
    mark_px = D("45300")
    quantity = D("0.1")
    equity = D("30")
    requirement = D("31.71")
    size = D("0.046")
    bankruptcy_px = D("45000")
    at = NOW


class ReferencePriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReferencePrice

    contract = factory.SubFactory(NewContractFactory)
    kind = "clearing"
    price = D("1500")
    at = NOW
    auction_ref = factory.Sequence(lambda n: f"auction-{n}")


class EdgeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Edge

    name = factory.Sequence(lambda n: f"loop-{n}")
    block_number = 100
    updated_at = NOW


class AuctionFactory(factory.django.DjangoModelFactory):
    """A solved auction: it has its input and result documents."""

    class Meta:
        model = Auction

    group = factory.Sequence(lambda n: f"B{n}/USDC")  # one auction not applied per group
    slot = factory.Sequence(lambda n: NOW + timedelta(seconds=10 * n))
    state = "solved"
    input_document = factory.LazyFunction(lambda: {"format": "ccp-auction-input/1"})
    result_document = factory.LazyFunction(lambda: {"format": "ccp-auction-result/1"})
    opened_at = NOW


class AuctionReservationFactory(factory.django.DjangoModelFactory):
    """Free collateral an auction set aside for a client at its close."""

    class Meta:
        model = AuctionReservation

    auction = factory.SubFactory(AuctionFactory)
    client = factory.SubFactory(ClientFactory)
    currency = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)
    amount = D("100")
    held = D("10")
    standalone = D("110")


class OperatorAlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OperatorAlert

    key = factory.Sequence(lambda n: f"settlement:BTC/USDC:{n}")
    kind = "settlement_price"
    message = "too few venues"
    raised_at = NOW
    updated_at = NOW


class VenueSymbolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VenueSymbol

    pair = factory.SubFactory(NewPairFactory)
    venue = "gemini"
    symbol = "BTC/USD"


class ChainContractFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChainContract

    name = factory.Sequence(lambda n: f"Contract{n}")
    address = "0x" + "12" * 20
    chain_id = 31337
    deployed_block = 1
    created_at = NOW


class DepositFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deposit

    client = factory.SubFactory(ClientFactory)
    currency = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)
    amount = D("10")
    tx_hash = factory.Sequence(lambda n: f"0x{n:064x}")
    log_index = 0
    block_number = 5
    block_hash = "0x" + "ab" * 32
    recorded_at = NOW


class SettlementBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SettlementBatch

    batch_id = factory.Sequence(lambda n: f"0x{n:064x}")
    currency = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)
    nonce = 0
    gas_price = D("1000000000")
    tx_hash = factory.Sequence(lambda n: f"0x{n + 10**6:064x}")
    raw_tx = b"\x01"
    movements_count = 2
    created_at = NOW
    updated_at = NOW


class WithdrawalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Withdrawal

    client = factory.SubFactory(ClientFactory)
    client_withdrawal_id = factory.Sequence(lambda n: f"w-{n}")
    currency = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)
    amount = D("10")
    cash_movement = factory.LazyAttribute(lambda o: CashMovement.objects.create(
        client=o.client, currency=o.currency, amount=-o.amount if o.amount else D("-1"), origin="withdrawal",
        origin_ref=f"withdrawal-{CashMovement.objects.count()}", created_at=NOW))
    created_at = NOW


class ChainBalanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChainBalance

    fund_lock = factory.SubFactory(FundLockFactory)
    balance = D("1000")
    fundlock = D("1000")
    block_number = 7
    seen_at = NOW


class OperatorNonceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OperatorNonce

    address = factory.Sequence(lambda n: f"0x{n:040x}")
    next_nonce = 0


class SignInChallengeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SignInChallenge

    nonce = factory.Sequence(lambda n: f"nonce{n:012d}")
    address = factory.LazyFunction(lambda: Account.create().address.lower())
    message = "Sign in to ccp"
    issued_at = NOW
    expires_at = NOW + timedelta(minutes=5)


class ApiTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiToken

    key_hash = factory.Sequence(lambda n: hashlib.sha256(f"token-{n}".encode()).hexdigest())
    prefix = "ccp_tok"
    client = factory.SubFactory(ClientFactory)
    created_at = NOW
    expires_at = NOW + timedelta(days=30)


class TradingModeChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradingModeChange

    contract = factory.SubFactory(NewContractFactory)
    from_mode = "auction"
    to_mode = "continuous"
    changed_by = "operator"
    at = NOW


# --- The table: constraint name -> a bad row ---


@dataclass(frozen=True)
class From:
    """In ``changes``: the value of this field of the first row."""

    name: str


@dataclass(frozen=True)
class Case:
    """Two rows about one rule: a valid first row, ``factory(**given)``, and a second row built
    the same way with the ``same`` fields copied from the first and ``changes`` applied.

    """

    rule: str
    factory: type[factory.django.DjangoModelFactory]
    given: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    same: tuple[str, ...] = ()

    @property
    def model(self):
        return self.factory._meta.model

    def second_row_fields(self, first) -> dict:
        changes = {name: getattr(first, v.name) if isinstance(v, From) else v for name, v in self.changes.items()}
        return {**self.given, **{name: getattr(first, name) for name in self.same}, **changes}


def case(rule, factory_class, label="", *, given=None, same=(), marks=(), **changes):
    return pytest.param(
        Case(rule, factory_class, given or {}, changes, same),
        id=f"{rule}-{label}" if label else rule,
        marks=marks,
    )


# Consistent (state -> fields) rows of the 1-lot OrderFactory order, one per state.
ORDER_IN_STATE = {
    S.RECEIVED: {"state": S.RECEIVED},
    S.UNTRIGGERED: {"state": S.UNTRIGGERED},
    S.ACCEPTED: {"state": S.ACCEPTED},
    S.PARTIALLY_FILLED: {"state": S.PARTIALLY_FILLED, "filled_quantity": D("0.4"), "order_value": D("720")},
    S.FILLED: {"state": S.FILLED, "filled_quantity": D("1"), "order_value": D("0")},
    S.CANCELLED: {"state": S.CANCELLED, "filled_quantity": D("0.4"), "order_value": D("0")},
    S.EXPIRED: {"state": S.EXPIRED, "order_value": D("0")},
    S.REJECTED: {"state": S.REJECTED, "reject_reason": "insufficient_collateral", "order_value": D("0")},
}

CONSTRAINT_CASES = [
    # matching
    case("auction_unique_group_slot", AuctionFactory, given={"state": "applied"}, same=("group", "slot")),
    case("auction_one_unapplied_per_group", AuctionFactory, same=("group",)),
    case("auction_state_valid", AuctionFactory, state="running"),
    case("auction_closed_has_input", AuctionFactory, state="closed", input_document=None, result_document=None),
    case("auction_solved_has_result", AuctionFactory, result_document=None),
    case("reservation_unique", AuctionReservationFactory, same=("auction", "client", "currency")),
    case("reservation_amount_non_negative", AuctionReservationFactory, amount=D("-1")),
    # system
    case("alert_one_open_per_key", OperatorAlertFactory, same=("key",)),
    case("alert_kind_valid", OperatorAlertFactory, kind="panic"),
    case("edge_has_position", EdgeFactory, at=None, block_number=None),
    case("edge_block_non_negative", EdgeFactory, block_number=-1),
    # accounts
    case("client_address_format", ClientFactory, "checksummed", address=UPPER_CASE_ADDRESS),
    case("client_address_format", ClientFactory, "no-0x", address="ab" * 21),
    case("fundlock_unique_client_currency", FundLockFactory, same=("client", "currency")),
    case("fundlock_non_negative", FundLockFactory, fundlock=D("-1"), settle_value=D("1")),
    case("fundlock_order_value_non_negative", FundLockFactory, order_value=D("-1")),
    case("fundlock_lockup_value_non_negative", FundLockFactory, lockup_value=D("-1")),
    case("fundlock_available_non_negative", FundLockFactory, "orders-and-lockups",
         order_value=D("600"), lockup_value=D("400.000000000000000001")),
    case("fundlock_available_non_negative", FundLockFactory, "owes-settlement", settle_value=D("-1000.5")),
    case("fundlock_available_non_negative", FundLockFactory, "margin", margin_value=D("1000.000000000000000001")),
    case("challenge_address_format", SignInChallengeFactory, address=UPPER_CASE_ADDRESS),
    case("challenge_nonce_format", SignInChallengeFactory, "too-short", nonce="abc123"),
    case("challenge_nonce_format", SignInChallengeFactory, "punctuation", nonce="nonce-0000000000001"),
    case("challenge_expiry_after_issue", SignInChallengeFactory, expires_at=NOW),
    case("challenge_used_after_issue", SignInChallengeFactory, used_at=NOW - timedelta(seconds=1)),
    case("token_hash_format", ApiTokenFactory, "upper-case", key_hash="AB" * 32),
    case("token_hash_format", ApiTokenFactory, "too-short", key_hash="ab" * 31),
    case("token_expiry_after_creation", ApiTokenFactory, expires_at=NOW),
    case("token_revoked_after_creation", ApiTokenFactory, revoked_at=NOW - timedelta(seconds=1)),
    # contracts
    case("currency_symbol_format", NewCurrencyFactory, "lower-case", symbol="btc"),
    case("currency_symbol_format", NewCurrencyFactory, "one-letter", symbol="B"),
    case("currency_decimals_range", NewCurrencyFactory, decimals=37),
    case("currency_token_address_format", NewCurrencyFactory, token_address=UPPER_CASE_ADDRESS),
    case("pair_unique", NewPairFactory, same=("base", "quote")),
    case("pair_distinct_currencies", NewPairFactory, quote=factory.SelfAttribute("base")),
    case("contract_unique_terms", NewContractFactory, "option",
         same=("pair", "expiry_date", "kind", "strike_px"), symbol="SAME-TERMS-C"),
    case("contract_unique_terms", NewContractFactory, "future-null-strike", given={"kind": "future", "strike_px": None},
         same=("pair", "expiry_date"), symbol="SAME-TERMS-F"),
    case("contract_kind_valid", NewContractFactory, kind="swap", symbol="X-SWAP"),
    case("contract_state_valid", NewContractFactory, state="paused"),
    case("contract_floor_non_negative", NewContractFactory, floor_px=D("-1")),
    case("contract_cap_above_floor", NewContractFactory,
         floor_px=D("100000"), cap_px=D("100000"), strike_px=D("100000")),
    case("contract_tick_positive", NewContractFactory, tick_size=D("0")),
    case("contract_lot_positive", NewContractFactory, lot_size=D("0")),
    case("contract_book_sequence_non_negative", NewContractFactory, book_sequence=-1),
    case("contract_strike_within_bounds", NewContractFactory, "below-floor", strike_px=D("49999.99")),
    case("contract_strike_within_bounds", NewContractFactory, "above-cap", kind="put", strike_px=D("150000.01")),
    case("contract_strike_within_bounds", NewContractFactory, "future-with-strike", kind="future"),
    # strike_px >= floor_px is NULL for a NULL strike, and a CHECK passes on NULL
    case("contract_strike_within_bounds", NewContractFactory, "option-without-strike", strike_px=None,
         symbol="X-NO-STRIKE-C"),
    case("contract_trading_mode_valid", NewContractFactory, trading_mode="rfq"),
    case("contract_perpetual_has_no_expiry", PerpetualContractFactory, "with-expiry", expiry_date=NOW.date()),
    case("contract_perpetual_has_no_expiry", PerpetualContractFactory, "in-auctions", trading_mode="auction"),
    case("contract_perpetual_has_no_expiry", NewContractFactory, "dated-without-expiry", expiry_date=None,
         symbol="X-NO-EXPIRY-C"),
    # perps
    case("perpetual_liquidation_fee_range", PerpetualFactory, liquidation_fee_rate=D("0.1")),
    case("perpetual_funding_cap_range", PerpetualFactory, funding_cap=D("-0.001")),
    case("perpetual_alpha_range", PerpetualFactory, basis_alpha=D("0")),
    case("perpetual_basis_bound_range", PerpetualFactory, basis_bound=D("0.5")),
    case("perpetual_mark_positive", PerpetualFactory, mark_px=D("0")),
    case("mark_price_unique_time", MarkPriceFactory, same=("contract", "at")),
    case("mark_price_positive", MarkPriceFactory, index_px=D("0")),
    case("funding_unique_time", FundingFactory, same=("contract", "at")),
    case("funding_amounts_valid", FundingFactory, "paid", paid=D("-0.01")),
    case("funding_amounts_valid", FundingFactory, "mark", mark_px=D("0")),
    case("liquidation_size_positive", LiquidationFactory, size=D("0")),
    case("liquidation_kind_valid", LiquidationFactory, kind="call",
         counterparty=factory.SelfAttribute("order.client")),
    case("liquidation_counterparty_present", LiquidationFactory, kind="takeover"),
    case("liquidation_fee_non_negative", LiquidationFactory, fee=D("-1")),
    case("trading_mode_change_modes_valid", TradingModeChangeFactory, "from", from_mode="rfq"),
    case("trading_mode_change_modes_valid", TradingModeChangeFactory, "to", to_mode="rfq", from_mode="auction"),
    case("trading_mode_change_changes", TradingModeChangeFactory, to_mode="auction"),
    case("trading_mode_change_has_author", TradingModeChangeFactory, changed_by=""),
    # orders
    case("order_unique_client_order_id", OrderFactory, same=("client", "client_order_id")),
    case("withdrawal_unique_client_withdrawal_id", WithdrawalFactory, same=("client", "client_withdrawal_id")),
    case("order_side_valid", OrderFactory, side="hold"),
    case("order_kind_valid", OrderFactory, kind="stop"),
    case("order_tif_valid", OrderFactory, time_in_force="day"),
    case("order_stp_valid", OrderFactory, self_trade_prevention="allow"),
    case("order_trigger_valid", OrderFactory, "no-price", trigger="stop", trigger_source="mark"),
    case("order_trigger_valid", OrderFactory, "price-without-trigger", trigger_price=D("100")),
    case("order_leg_has_parent", OrderFactory, leg="tp"),
    case("order_unique_leg", OrderFactory, given={"parent": factory.SubFactory(OrderFactory), "leg": "tp"},
         same=("parent", "leg")),
    case("order_state_valid", OrderFactory, state="open"),
    case("order_price_non_negative", OrderFactory, price=D("-0.01")),
    # a zero quantity can only be consistent with the other rules when 'filled'
    case("order_quantity_positive", OrderFactory,
         **ORDER_IN_STATE[S.FILLED] | {"quantity": D("0"), "filled_quantity": D("0")}),
    case("order_filled_within_quantity", OrderFactory, filled_quantity=D("-0.01")),
    case("order_value_non_negative", OrderFactory, order_value=D("-1")),
    case("order_margin_terms_valid", OrderFactory, "leverage-below-1", leverage=D("0.5"), margin_mode="cross"),
    case("order_margin_terms_valid", OrderFactory, "leverage-without-mode", leverage=D("2")),
    # leverage >= 1 is NULL for a NULL leverage, and a CHECK passes on NULL: "IS NOT NULL" must catch it
    case("order_margin_terms_valid", OrderFactory, "mode-without-leverage", margin_mode="isolated"),
    case("order_filled_state_matches_quantity", OrderFactory, "filled-short",
         **ORDER_IN_STATE[S.FILLED] | {"filled_quantity": D("0.99")}),
    case("order_filled_state_matches_quantity", OrderFactory, "partially-but-complete",
         **ORDER_IN_STATE[S.PARTIALLY_FILLED] | {"filled_quantity": D("1")}),
    case("order_filled_state_matches_quantity", OrderFactory, "cancelled-but-complete",
         **ORDER_IN_STATE[S.CANCELLED] | {"filled_quantity": D("1")}),
    *[
        case("order_terminal_holds_no_value", OrderFactory, state, **ORDER_IN_STATE[state] | {"order_value": D("1")})
        for state in sorted(TERMINAL_STATES)
    ],
    case("order_unfilled_before_acceptance", OrderFactory, "received", state=S.RECEIVED, filled_quantity=D("0.4")),
    case("order_unfilled_before_acceptance", OrderFactory, "rejected",
         **ORDER_IN_STATE[S.REJECTED] | {"filled_quantity": D("0.4")}),
    case("order_rejected_has_reason", OrderFactory, **ORDER_IN_STATE[S.REJECTED] | {"reject_reason": ""}),
    case("history_to_state_valid", OrderStateHistoryFactory, to_state="open"),
    case("history_from_state_valid", OrderStateHistoryFactory, from_state="open"),
    case("history_filled_non_negative", OrderStateHistoryFactory, filled_quantity=D("-1")),
    case("order_no_fill_price_unfilled", OrderFactory, average_fill_price=D("1200")),
    case("order_no_fill_price_unfilled", OrderFactory, "last-fill-at", last_fill_at=NOW),
    # clearing
    case("trade_unique_contract_sequence", TradeFactory, same=("contract", "sequence")),
    case("trade_unique_venue_orders", TradeFactory, same=("venue", "venue_ref", "buy_order", "sell_order")),
    case("trade_venue_valid", TradeFactory, venue="desk"),
    case("trade_quantity_positive", TradeFactory, quantity=D("0")),
    case("trade_price_non_negative", TradeFactory, price=D("-1")),
    case("trade_sequence_positive", TradeFactory, sequence=0),
    case("trade_orders_differ", TradeFactory, same=("buy_order",), sell_order=From("buy_order")),
    case("trade_aggressor_side_valid", TradeFactory, aggressor_side="both"),
    # marketdata
    case("candle_unique_bucket", CandleFactory, same=("contract", "interval", "bucket_start")),
    case("candle_interval_valid", CandleFactory, interval="2m"),
    case("candle_low_non_negative", CandleFactory, low=D("-1")),
    case("candle_prices_within_range", CandleFactory, "close-above-high", close=D("1251")),
    case("candle_prices_within_range", CandleFactory, "open-below-low", open=D("1099")),
    case("candle_volume_positive", CandleFactory, volume=D("0")),
    case("candle_trade_count_positive", CandleFactory, trade_count=0),
    case("candle_sequences_ordered", CandleFactory, "first-after-last", first_sequence=4),
    case("candle_sequences_ordered", CandleFactory, "first-zero", first_sequence=0),
    # risk
    case("position_unique_client_contract", PositionFactory, same=("client", "contract")),
    case("position_flat_has_no_entry", PositionFactory, quantity=D("0"), cost=D("1")),
    case("position_margin_mode_valid", PositionFactory, margin_mode="hedge"),
    case("position_triggers_isolated", PositionFactory, "cross", margin_mode="cross", liquidation_px=D("1")),
    case("position_triggers_isolated", PositionFactory, "flat", margin_mode="isolated", quantity=D("0"), cost=D("0"),
         entry_price=None, call_px=D("1")),
    case("lockup_unique_portfolio", LockupFactory, same=("client", "pair", "expiry_date")),
    case("lockup_non_negative", LockupFactory, amount=D("-0.000000000000000001")),
    # settlement
    case("cash_movement_unique_origin", CashMovementFactory, "auction",
         same=("origin", "origin_ref", "client", "contract")),
    case("cash_movement_unique_origin", CashMovementFactory, "withdrawal-null-contract",
         given={"origin": "withdrawal", "contract": None, "position_delta": D("0"), "amount": D("-10")},
         same=("origin_ref", "client")),
    case("cash_movement_origin_valid", CashMovementFactory, origin="gift"),
    case("cash_movement_origin_ref_present", CashMovementFactory, origin_ref=""),
    case("cash_movement_not_empty", CashMovementFactory, amount=D("0"), position_delta=D("0")),
    case("cash_movement_position_needs_contract", CashMovementFactory, contract=None),
    case("tracking_one_live_per_movement", CashMovementTrackingFactory, same=("cash_movement",)),
    case("tracking_state_valid", CashMovementTrackingFactory, state="lost"),
    case("tracking_tx_hash_format", CashMovementTrackingFactory, tx_hash=UPPER_CASE_TX_HASH),
    case("tracking_sent_has_tx_hash", CashMovementTrackingFactory, state="submitted"),
    case("tracking_confirmed_has_block", CashMovementTrackingFactory, state="confirmed", tx_hash=TX_HASH),
    case("tracking_block_non_negative", CashMovementTrackingFactory, block_number=-1),
    case("tracking_batch_id_format", CashMovementTrackingFactory, batch_id="batch-1"),
    # chain
    case("chain_contract_address_format", ChainContractFactory, address="0xABC"),
    case("deposit_unique_log", DepositFactory, same=("tx_hash", "log_index")),
    case("deposit_amount_positive", DepositFactory, amount=D("0")),
    case("batch_state_valid", SettlementBatchFactory, state="lost"),
    case("batch_nonce_non_negative", SettlementBatchFactory, nonce=-1),
    case("batch_one_live_transaction", SettlementBatchFactory, same=("batch_id",)),
    case("nonce_non_negative", OperatorNonceFactory, next_nonce=-1),
    case("chain_balance_non_negative", ChainBalanceFactory, balance=D("-1")),
    case("withdrawal_amount_positive", WithdrawalFactory, amount=D("0")),
    case("withdrawal_state_valid", WithdrawalFactory, state="gone"),
    # prices
    case("venue_symbol_unique_pair_venue", VenueSymbolFactory, same=("pair", "venue"), symbol="BTC/USDT"),
    case("venue_symbol_venue_valid", VenueSymbolFactory, venue="kraken"),
    case("venue_symbol_format", VenueSymbolFactory, symbol="btc-usd"),
    case("spot_unique_source_time", SpotPriceFactory, same=("pair", "source", "observed_at")),
    # one settlement price per pair and minute: settlement rows all have source 'settlement'
    case("spot_unique_source_time", SpotPriceFactory, "settlement",
         given={"is_settlement": True, "source": "settlement"}, same=("pair", "observed_at")),
    case("spot_price_positive", SpotPriceFactory, price=D("0")),
    case("spot_settlement_source", SpotPriceFactory, is_settlement=True),
    case("reference_one_initial", ReferencePriceFactory, given={"kind": "initial", "auction_ref": ""},
         same=("contract",)),
    case("reference_one_per_auction", ReferencePriceFactory, same=("contract", "auction_ref")),
    case("reference_kind_valid", ReferencePriceFactory, kind="final"),
    case("reference_price_non_negative", ReferencePriceFactory, price=D("-1")),
    case("reference_clearing_has_auction", ReferencePriceFactory, auction_ref=""),
]

# unique=True fields: Django names their constraints itself, so these assert on the key column.
UNIQUE_FIELD_CASES = [
    case("Liquidation.order", LiquidationFactory, same=("order",)),
    case("Client.address", ClientFactory, same=("address",)),
    case("Currency.symbol", NewCurrencyFactory, same=("symbol",)),
    case("Currency.token_address", NewCurrencyFactory, given={"token_address": "0x" + "12" * 20},
         same=("token_address",)),
    case("Contract.symbol", NewContractFactory, same=("symbol",)),
    case("Edge.name", EdgeFactory, same=("name",)),
    case("OperatorNonce.address", OperatorNonceFactory, same=("address",)),
    case("ChainBalance.fund_lock", ChainBalanceFactory, same=("fund_lock",)),
    case("Withdrawal.cash_movement", WithdrawalFactory, same=("cash_movement",)),
    case("ChainContract.name", ChainContractFactory, same=("name",)),
    case("SettlementBatch.tx_hash", SettlementBatchFactory, same=("tx_hash",), batch_id="0x" + "ee" * 32),
    case("SignInChallenge.nonce", SignInChallengeFactory, same=("nonce",)),
    case("ApiToken.key_hash", ApiTokenFactory, same=("key_hash",)),
]


def ccp_models():
    configs = [config for config in apps.get_app_configs() if config.name.startswith("ccp.")]
    return [model for config in configs for model in config.get_models()]


def covered(cases) -> set[str]:
    return {param.values[0].rule for param in cases}


def unsaved_row(factory_class, **fields):
    """The row the factory would insert, with its related rows saved but not itself."""

    class Unsaved(factory_class):
        @classmethod
        def _create(cls, model_class, *args, **kwargs):
            return model_class(*args, **kwargs)

    return Unsaved(**fields)


def broken_rules(row) -> set[str]:
    """Which constraints and unique fields Django (querying the database) finds an unsaved row breaks."""
    broken = set()
    for constraint in row._meta.constraints:
        try:
            constraint.validate(type(row), row)
        except ValidationError:
            broken.add(constraint.name)
    try:
        row.validate_unique()
    except ValidationError as error:
        broken |= {f"{type(row).__name__}.{name}" for name in error.error_dict}
    return broken


def bad_row(case: Case, first):
    """The case's second row, unsaved, after checking it breaks exactly the case's rule."""
    row = unsaved_row(case.factory, **case.second_row_fields(first))
    assert broken_rules(row) == {case.rule}
    return row


def insert_rejected(row) -> IntegrityError:
    """Insert the row; assert the database refused it and kept nothing. Returns the error."""
    rows_before = type(row).objects.count()
    with transaction.atomic():
        with pytest.raises(IntegrityError) as err:
            row.save()
    assert type(row).objects.count() == rows_before
    return err.value


@pytest.mark.django_db
@pytest.mark.parametrize("case", CONSTRAINT_CASES)
def test_constraint_rejects_bad_row(case):
    # given a valid row that saves, and a row breaking only this rule
    first = case.factory(**case.given)
    row = bad_row(case, first)

    # when the bad row is inserted
    error = insert_rejected(row)

    # then PostgreSQL names the rule
    assert f'constraint "{case.rule}"' in str(error)


@pytest.mark.django_db
@pytest.mark.parametrize("case", UNIQUE_FIELD_CASES)
def test_unique_field_rejects_duplicate(case):
    # given a valid row that saves, and a second one repeating its unique field
    first = case.factory(**case.given)
    row = bad_row(case, first)

    # when the duplicate is inserted
    error = insert_rejected(row)

    # then PostgreSQL reports the field as the duplicated key
    column = case.model._meta.get_field(case.rule.split(".")[1]).column
    assert f"Key ({column})=" in str(error)


def test_every_constraint_has_a_bad_row():
    declared = {constraint.name for model in ccp_models() for constraint in model._meta.constraints}

    assert declared == covered(CONSTRAINT_CASES)


def test_every_unique_field_has_a_duplicate_row():
    declared = {
        f"{model.__name__}.{f.name}"
        for model in ccp_models()
        for f in model._meta.concrete_fields
        if f.unique and not f.primary_key
    }

    assert declared == covered(UNIQUE_FIELD_CASES)


# --- Good rows at the edges of the rules ---


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("factory_class", "fields"),
    [
        pytest.param(EdgeFactory, {"block_number": 0}, id="edge-at-block-zero"),
        pytest.param(EdgeFactory, {"block_number": None, "at": NOW}, id="edge-with-time-only"),
        pytest.param(FundLockFactory, {"order_value": D("600"), "lockup_value": D("400")},
                     id="fundlock-available-zero"),
        pytest.param(FundLockFactory, {"settle_value": D("-300"), "order_value": D("700")},
                     id="fundlock-negative-settle-covered"),
        pytest.param(FundLockFactory, {"fundlock": D("0"), "settle_value": D("50"), "order_value": D("50")},
                     id="fundlock-empty-but-credited"),
        pytest.param(SignInChallengeFactory, {"nonce": "A" * 16, "used_at": NOW}, id="challenge-used-at-issue"),
        pytest.param(SignInChallengeFactory, {"nonce": "z9" * 16}, id="challenge-nonce-32-chars"),
        pytest.param(ApiTokenFactory, {"expires_at": NOW + timedelta(microseconds=1)}, id="token-expires-just-after"),
        pytest.param(NewCurrencyFactory, {"symbol": "USDC2", "decimals": 36, "token_address": "0x" + "ab" * 20},
                     id="currency-36-decimals-with-token"),
        pytest.param(NewContractFactory, {"strike_px": D("50000")}, id="strike-at-floor"),
        pytest.param(NewContractFactory, {"kind": "put", "strike_px": D("150000")}, id="strike-at-cap"),
        pytest.param(NewContractFactory, {"kind": "future", "strike_px": None}, id="future-without-strike"),
        pytest.param(NewContractFactory, {"floor_px": D("0"), "strike_px": D("0"), "cap_px": D("0.000000000000000001")},
                     id="floor-zero-cap-one-unit-above"),
        pytest.param(OrderFactory, {"price": D("0")}, id="order-price-zero"),
        pytest.param(OrderStateHistoryFactory, {"from_state": None, "to_state": S.RECEIVED}, id="history-first-state"),
        pytest.param(LockupFactory, {"amount": D("0")}, id="lockup-zero"),
        pytest.param(CashMovementFactory, {"amount": D("0")}, id="movement-position-only"),
        pytest.param(CashMovementFactory, {"contract": None, "position_delta": D("0"), "origin": "withdrawal"},
                     id="movement-withdrawal-without-contract"),
        pytest.param(CashMovementTrackingFactory,
                     {"state": "confirmed", "tx_hash": TX_HASH, "block_number": 7}, id="tracking-confirmed"),
        pytest.param(CashMovementTrackingFactory, {"state": "failed"}, id="tracking-failed-before-sending"),
        pytest.param(SpotPriceFactory, {"is_settlement": True, "source": "settlement", "venues": ["a", "b"]},
                     id="spot-settlement"),
        pytest.param(ReferencePriceFactory, {"kind": "initial", "auction_ref": "", "price": D("0")},
                     id="reference-initial-at-zero"),
    ],
)
def test_valid_row_at_the_edge_saves(factory_class, fields):
    # when a row right at the edge of a rule is inserted
    row = factory_class(**fields)

    # then it is stored as given
    row.refresh_from_db()
    assert {name: getattr(row, name) for name in fields} == fields


@pytest.mark.django_db
@pytest.mark.parametrize("state", S.values)
def test_order_saves_in_every_state_when_consistent(state):
    # when an order whose fill, held value and reason fit its state is inserted
    order = OrderFactory(**ORDER_IN_STATE[state])

    # then it is stored
    order.refresh_from_db()
    assert order.state == state


# Pairs of rows that a unique rule must NOT confuse: the second differs only where allowed.
NEIGHBOUR_CASES = [
    case("alert_one_open_per_key", OperatorAlertFactory, "after-resolved", given={"resolved_at": NOW},
         same=("key",)),
    case("fundlock_unique_client_currency", FundLockFactory, "other-currency", same=("client",),
         currency=factory.SubFactory(NewCurrencyFactory)),
    case("pair_unique", NewPairFactory, "reversed", base=From("quote"), quote=From("base")),
    case("contract_unique_terms", NewContractFactory, "other-strike", same=("pair", "expiry_date", "kind"),
         strike_px=D("100001")),
    case("order_unique_client_order_id", OrderFactory, "other-client", same=("client_order_id",)),
    case("withdrawal_unique_client_withdrawal_id", WithdrawalFactory, "other-client", same=("client_withdrawal_id",)),
    case("lockup_unique_portfolio", LockupFactory, "other-expiry", same=("client", "pair"),
         expiry_date=date(2027, 3, 26)),
    case("cash_movement_unique_origin", CashMovementFactory, "other-contract", same=("origin", "origin_ref", "client")),
    case("tracking_one_live_per_movement", CashMovementTrackingFactory, "after-failed", given={"state": "failed"},
         same=("cash_movement",), state="pending"),
    case("tracking_one_live_per_movement", CashMovementTrackingFactory, "after-replaced", given={"state": "replaced"},
         same=("cash_movement",), state="submitted", tx_hash="0x" + "ef" * 32),
    case("spot_unique_source_time", SpotPriceFactory, "venue-beside-settlement",
         given={"is_settlement": True, "source": "settlement"}, same=("pair", "observed_at"),
         is_settlement=False, source="kraken"),
    case("reference_one_initial", ReferencePriceFactory, "then-clearing", given={"kind": "initial", "auction_ref": ""},
         same=("contract",), kind="clearing", auction_ref="auction-x"),
    case("reference_one_per_auction", ReferencePriceFactory, "same-auction-other-contract", same=("auction_ref",)),
    case("auction_one_unapplied_per_group", AuctionFactory, "after-applied", given={"state": "applied"},
         same=("group",)),
    case("auction_one_unapplied_per_group", AuctionFactory, "other-pair", same=("state", "slot")),
]


@pytest.mark.django_db
@pytest.mark.parametrize("case", NEIGHBOUR_CASES)
def test_unique_rule_allows_neighbour_row(case):
    # given a valid row
    first = case.factory(**case.given)

    # when a second row differs from it only where the rule allows
    second = unsaved_row(case.factory, **case.second_row_fields(first))
    assert broken_rules(second) == set()
    second.save()

    # then both are kept
    assert case.model.objects.filter(pk__in=[first.pk, second.pk]).count() == 2
