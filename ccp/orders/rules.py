"""The rules an order must meet, as stable reason codes. Pure: reads the contract, no queries.

The endpoint applies them before storing an order (a 400 with the code); the validator applies
them again with the collateral check, because time passes between the two (a halt may begin).
"""

from datetime import datetime
from decimal import ROUND_UP, Decimal

from ccp.contracts.models import Contract, ContractState
from ccp.contracts.payoffs import Terms, order_worst_cost, price_bounds
from ccp.money import quantize
from ccp.orders.models import OrderKind, Side

REASONS = {
    "side_invalid": "Side must be buy or sell.",
    "kind_invalid": "Only limit orders are taken.",
    "contract_not_tradeable": "The contract is not listed for trading.",
    "contract_halted": "The contract stopped trading: 00:00 UTC on its expiry day.",
    "quantity_not_positive": "Quantity must be positive.",
    "quantity_off_lot": "Quantity must be a whole number of lots.",
    "price_off_tick": "Price must be on the contract's tick grid.",
    "price_out_of_bounds": "Price is outside what the contract can be worth.",
    "insufficient_collateral": "Available collateral does not cover the order's worst case.",
}


def order_rule_violation(*, contract: Contract, side: str, kind: str, price: Decimal, quantity: Decimal,
                         now: datetime) -> str | None:
    """The first rule the order breaks, or None. Collateral is checked by the validator."""
    if side not in Side.values:
        return "side_invalid"
    if kind not in OrderKind.values:
        return "kind_invalid"
    if contract.state == ContractState.HALTED or (contract.state == ContractState.LISTED
                                                  and now >= contract.trading_ends_at):
        return "contract_halted"
    if contract.state != ContractState.LISTED:
        return "contract_not_tradeable"
    if quantity <= 0:
        return "quantity_not_positive"
    if quantity % contract.lot_size != 0:
        return "quantity_off_lot"
    if price % contract.tick_size != 0:
        return "price_off_tick"
    low, high = price_bounds(contract.terms)
    if not low <= price <= high:
        return "price_out_of_bounds"
    return None


def order_value(terms: Terms, side: str, price: Decimal, quantity: Decimal) -> Decimal:
    """The collateral an open order holds for ``quantity``: its worst case, rounded up to storage
    precision (the hold must cover it, never fall short)."""
    return quantize(order_worst_cost(terms, side, price, quantity), ROUND_UP)
