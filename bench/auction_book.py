"""Random auction books for the benchmark and tests: realistic prices, some clients whose collateral binds."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from ccp.contracts.payoffs import ContractKind, Terms, order_worst_cost, price_bounds
from ccp.matching.auction import AuctionInput, AuctionSettings, ClientSpec, ContractSpec, OrderSpec

SPOT = Decimal(100000)
FLOOR, CAP = Decimal(50000), Decimal(150000)


def _fair(terms: Terms, days: int) -> Decimal:
    """Intrinsic value plus a little time value: enough for prices that cross around a level."""
    time_value = Decimal(400) * Decimal(days).sqrt()
    if terms.kind is ContractKind.FUTURE:
        return SPOT - terms.floor
    intrinsic = max(SPOT - terms.strike, 0) if terms.kind is ContractKind.CALL else max(terms.strike - SPOT, 0)
    return intrinsic + time_value


def contracts(count: int = 20) -> list[ContractSpec]:
    specs = []
    expiries = [date(2026, 12, 25) + timedelta(days=28 * k) for k in range((count + 9) // 10)]
    for n, expiry in enumerate(expiries):
        portfolio = f"BTC/USDC {expiry}"
        kinds = [(ContractKind.CALL, s) for s in (90000, 95000, 100000, 105000, 110000)]
        kinds += [(ContractKind.PUT, s) for s in (90000, 95000, 100000, 105000)] + [(ContractKind.FUTURE, None)]
        for kind, strike in kinds:
            if len(specs) == count:
                break
            terms = Terms(kind, FLOOR, CAP, Decimal(strike) if strike else None)
            symbol = f"BTC-{expiry:%Y%m%d}-{strike or ''}-{kind.value[0].upper()}"
            reference = (_fair(terms, 30 + 28 * n) / 10).quantize(Decimal(1)) * 10
            specs.append(ContractSpec(symbol, terms, Decimal(10), Decimal("0.01"), portfolio, reference))
    return specs


def book(orders: int, contract_count: int = 20, clients: int = 2000, binding_share: float = 0.05,
         seed: int = 7, time_limit_s: str = "60") -> AuctionInput:
    rng = random.Random(seed)
    specs = contracts(contract_count)
    order_specs = []
    owner = [f"client-{rng.randrange(clients):04d}" for _ in range(orders)]
    for n in range(orders):
        contract = specs[rng.randrange(len(specs))]
        side = "buy" if rng.random() < 0.5 else "sell"
        low, high = price_bounds(contract.terms)
        fair = contract.reference_price
        # Buyers bid around fair value, sellers ask around it: about half of the book crosses.
        skew = Decimal(rng.gauss(0, 0.04)) * fair + (-fair / 50 if side == "buy" else fair / 50)
        price = ((fair + skew) / contract.tick).quantize(Decimal(1)) * contract.tick
        price = min(max(price, low + contract.tick), high - contract.tick)
        quantity = contract.lot * rng.randint(1, 20)
        order_specs.append(OrderSpec(str(n + 1), owner[n], contract.symbol, side, price, quantity, n + 1))
    by_symbol = {c.symbol: c for c in specs}
    worst: dict[str, Decimal] = {}
    for order in order_specs:
        terms = by_symbol[order.contract].terms
        worst[order.client] = worst.get(order.client, Decimal(0)) + order_worst_cost(
            terms, order.side, order.price, order.quantity)
    client_specs = []
    for k in range(clients):
        client_id = f"client-{k:04d}"
        need = worst.get(client_id, Decimal(0))
        # Most clients hold collateral for everything they bid; a share holds a third of it.
        budget = need / 3 if rng.random() < binding_share else need + 1
        client_specs.append(ClientSpec(client_id, budget.quantize(Decimal("0.01"))))
    return AuctionInput(tuple(specs), tuple(client_specs), tuple(order_specs),
                        AuctionSettings(time_limit_s=Decimal(time_limit_s)), label=f"bench {orders} seed {seed}")
