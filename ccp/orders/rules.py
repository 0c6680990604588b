"""The rules an order must meet, as stable reason codes. Pure: reads the contract, no queries.

The endpoint applies them before storing an order (a 400 with the code); the validator applies
them again with the collateral check and the open-order cap, because time passes between the two
(a halt may begin).
"""

import decimal
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_UP, Decimal

from django.conf import settings

from ccp.contracts.models import Contract, ContractState, TradingMode
from ccp.contracts.payoffs import (
    ContractKind,
    Leg,
    Terms,
    lockup_amount,
    max_payoff_per_unit,
    order_worst_cost,
    premium_per_unit,
)
from ccp.money import DECIMAL_PLACES, MAX_DIGITS, quantize
from ccp.orders.models import OrderKind, SelfTrade, Side, TimeInForce, Trigger, TriggerSource
from ccp.perps.margin import initial_margin, tier_of

REASONS = {
    "side_invalid": "Side must be buy or sell.",
    "kind_invalid": "Kind must be limit or market.",
    "time_in_force_invalid": "Time in force must be gtc, ioc, fok or post_only; a market order's ioc or fok.",
    "self_trade_prevention_invalid": "Self-trade prevention must be cancel_incoming, cancel_resting or cancel_both.",
    "order_type_not_in_auction": ("The contract trades in batch auctions: they take limit orders, good till "
                                  "cancelled, not reduce-only, without a trigger, take-profit or stop-loss."),
    "trigger_invalid": ("A stop or take-profit order needs trigger (stop or take_profit), a trigger_price on the "
                        "tick grid within the price bounds and a trigger_source (mark, index, last); a limit "
                        "order then rests good till cancelled, a market order is immediate or cancel; it takes "
                        "no take-profit or stop-loss of its own."),
    "attached_invalid": ("A take-profit or stop-loss needs a trigger_price and a price on the tick grid within "
                         "the price bounds, a kind (limit or market: price is then the protection price) and a "
                         "trigger_source (mark, index, last)."),
    "contract_not_tradeable": "The contract is not listed for trading.",
    "margin_mode_invalid": "An order on a perpetual needs margin_mode cross or isolated.",
    "leverage_invalid": ("An order on a perpetual needs a leverage from 1 up to the highest of the maintenance tier "
                         "its size falls in (GET /contracts: perpetual.tiers)."),
    "margin_terms_not_perpetual": "Only orders on perpetuals take a leverage and a margin_mode.",
    "margin_mode_mismatch": ("Your position in this perpetual has the other margin mode: send the position's mode "
                             "(GET /positions: margin_mode), or close it first. Reduce-only orders take either."),
    "contract_halted": "The contract stopped trading: 00:00 UTC on its expiry day.",
    "quantity_not_positive": "Quantity must be positive.",
    "quantity_off_lot": "Quantity must be a whole number of lots.",
    "price_off_tick": "Price must be on the contract's tick grid.",
    "price_out_of_bounds": ("Price must lie within the contract's price_min and price_max: at least one tick above "
                            "the lowest value it can have and one tick below the highest, so that every order holds "
                            "collateral."),
    "order_too_large": ("The order's amounts (its quantity times the most the contract can pay) do not fit in 20 "
                        "integer digits and 18 decimal places."),
    "too_many_open_orders": "You have as many open orders as a client may have: cancel some first.",
    "insufficient_collateral": "Available collateral does not cover the order's worst case.",
}

# NUMERIC(38, 18) holds amounts below 10^20.
_STORABLE = Decimal(10) ** (MAX_DIGITS - DECIMAL_PLACES)

# The choices' values, built once (``Choices.values`` builds its list at every call: four per order checked).
_SIDES, _KINDS, _TIMES_IN_FORCE = tuple(Side.values), tuple(OrderKind.values), tuple(TimeInForce.values)
_SELF_TRADES, _TRIGGERS, _TRIGGER_SOURCES = tuple(SelfTrade.values), tuple(Trigger.values), tuple(TriggerSource.values)


def order_rule_violation(*, contract: Contract, side: str, kind: str, price: Decimal, quantity: Decimal,
                         now: datetime, time_in_force: str = TimeInForce.GTC, reduce_only: bool = False,
                         self_trade_prevention: str = SelfTrade.CANCEL_INCOMING, trigger: str = "",
                         trigger_price: Decimal | None = None, trigger_source: str = "",
                         attached: dict | None = None, leverage: Decimal | None = None,
                         margin_mode: str = "") -> str | None:
    """The first rule the order breaks, or None. Collateral and the open-order cap are checked by the
    validator (an auction contract's) or the matcher (a continuous contract's). A market order's
    ``price`` is its protection price: every price rule applies to it."""
    if side not in _SIDES:
        return "side_invalid"
    if kind not in _KINDS:
        return "kind_invalid"
    if time_in_force not in _TIMES_IN_FORCE or (
            kind == OrderKind.MARKET and time_in_force not in (TimeInForce.IOC, TimeInForce.FOK)):
        return "time_in_force_invalid"
    if self_trade_prevention not in _SELF_TRADES:
        return "self_trade_prevention_invalid"
    if contract.trading_mode == TradingMode.AUCTION and (
            kind != OrderKind.LIMIT or time_in_force != TimeInForce.GTC or reduce_only or trigger or attached):
        return "order_type_not_in_auction"
    if (trigger or trigger_price is not None or trigger_source) and not (
            trigger in _TRIGGERS and trigger_source in _TRIGGER_SOURCES and not attached
            and _on_grid(contract, trigger_price)
            and time_in_force == (TimeInForce.GTC if kind == OrderKind.LIMIT else TimeInForce.IOC)):
        return "trigger_invalid"
    if attached is not None and not _attached_valid(contract, attached):
        return "attached_invalid"
    if contract.state == ContractState.HALTED or (contract.state == ContractState.LISTED
                                                  and contract.trading_ended(now)):
        return "contract_halted"
    if contract.state != ContractState.LISTED or (contract.is_perpetual and not settings.CCP_PERPETUALS_OPEN):
        return "contract_not_tradeable"
    if quantity <= 0:
        return "quantity_not_positive"
    if contract.is_perpetual:
        if margin_mode not in ("cross", "isolated"):
            return "margin_mode_invalid"
        if not (isinstance(leverage, Decimal) and leverage.is_finite()
                and 1 <= leverage <= tier_of(contract.perpetual.tier_list, quantity).max_leverage):
            return "leverage_invalid"
    elif leverage is not None or margin_mode:
        return "margin_terms_not_perpetual"
    if quantity % contract.lot_size != 0:
        return "quantity_off_lot"
    if price % contract.tick_size != 0:
        return "price_off_tick"
    if not contract.price_min <= price <= contract.price_max:
        return "price_out_of_bounds"
    if not _amounts_storable(contract.terms, side, price, quantity):
        return "order_too_large"
    return None


def _on_grid(contract: Contract, price) -> bool:
    """A price on the contract's tick grid within its price bounds."""
    return (isinstance(price, Decimal) and price.is_finite() and price % contract.tick_size == 0
            and contract.price_min <= price <= contract.price_max)


def _attached_valid(contract: Contract, attached) -> bool:
    """``Order.attached``: {"tp"|"sl": {"trigger_price", "price": decimal strings, "kind", "trigger_source"}}."""
    if not isinstance(attached, dict) or not attached or not set(attached) <= {"tp", "sl"}:
        return False
    for leg in attached.values():
        if not isinstance(leg, dict) or set(leg) != {"trigger_price", "price", "kind", "trigger_source"}:
            return False
        try:
            prices = Decimal(leg["trigger_price"]), Decimal(leg["price"])
        except (ArithmeticError, TypeError, ValueError):
            return False
        if not (all(_on_grid(contract, p) for p in prices) and leg["kind"] in _KINDS
                and leg["trigger_source"] in _TRIGGER_SOURCES):
            return False
    return True


def _amounts_storable(terms: Terms, side: str, price: Decimal, quantity: Decimal) -> bool:
    """Whether every amount the order can create (its premium, held value, lockup and payoff, each at
    most quantity x the contract's maximum payoff) is exact and fits in storage: an auction or an expiry
    that cannot store an amount would fail on every retry."""
    try:
        # Rounded only beyond 60 digits, far above the limit: the comparison below stays right.
        if terms.kind is ContractKind.PERPETUAL:
            return price * quantity < _STORABLE  # its notional bounds its margin
        notional = max_payoff_per_unit(terms) * quantity
        order_value(terms, side, price, quantity)
    except ArithmeticError:  # the exact context refuses to round: beyond 60 significant digits
        return False
    return notional < _STORABLE


def order_value(terms: Terms, side: str, price: Decimal, quantity: Decimal, *, leverage: Decimal | None = None,
                reduce_only: bool = False) -> Decimal:
    """The collateral an open order holds for ``quantity``: its worst case, rounded up to storage
    precision (the hold must cover it, never fall short). On a perpetual: the initial margin of its
    notional at ``leverage`` (``ccp.perps.margin.initial_margin``), nothing for a reduce-only order (it
    only closes: its margin comes back)."""
    if terms.kind is ContractKind.PERPETUAL:
        return Decimal(0) if reduce_only else initial_margin(quantity=quantity, price=price, leverage=leverage)
    return quantize(order_worst_cost(terms, side, price, quantity), ROUND_UP)


# Exact arithmetic for the netted hold (as ``ccp.contracts.payoffs``): any rounding raises.
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


def order_value_netted(terms: Terms, side: str, price: Decimal, quantity: Decimal, portfolio: Iterable[Leg]
                       ) -> Decimal:
    """What an auction order on a dated contract holds at entry: what it can add to its portfolio's worst
    case given the client's positions there (``portfolio``: the legs of its (pair, expiry) portfolio),

        max(0, lockup(positions + order) - lockup(positions) + premium at the limit price)

    where a buy's premium counts as paid and a sell's as received, rounded up to storage precision. With
    no positions this is the stand-alone worst case (``order_value``); lockups are subadditive, so it is
    never more; a closing or risk-reducing order holds nothing beyond its premium less what it frees.
    The added worst case is convex in the quantity filled and 0 at none, so a partial fill of the order
    alone never needs more than this either. It does not bound what several orders of one client need
    together: the auction's budget does (``ccp.matching.services``)."""
    standalone = order_value(terms, side, price, quantity)
    positions = list(portfolio)
    signed = quantity if side == "buy" else -quantity
    with decimal.localcontext(_EXACT):
        added = lockup_amount([*positions, Leg(terms, signed)]) - lockup_amount(positions)
        value = added + premium_per_unit(terms, price) * signed
    return min(standalone, quantize(max(value, Decimal(0)), ROUND_UP))


def order_held(terms: Terms, side: str, price: Decimal, quantity: Decimal, attached: dict | None = None, *,
               leverage: Decimal | None = None, reduce_only: bool = False) -> Decimal:
    """What an open order holds for ``quantity`` of it: its worst case (``order_value``), and for an entry
    with an attached take-profit and stop-loss (``Order.attached``) each leg's worst case for the same
    quantity too: as the entry fills, each leg it arms holds its own (the value moves from the entry to
    the legs), so a fill never needs collateral the order did not already hold. A perpetual's legs are
    reduce-only: they hold nothing."""
    value = order_value(terms, side, price, quantity, leverage=leverage, reduce_only=reduce_only)
    if terms.kind is ContractKind.PERPETUAL:
        return value
    for leg in (attached or {}).values():
        value += order_value(terms, "sell" if side == "buy" else "buy", Decimal(leg["price"]), quantity)
    return value
