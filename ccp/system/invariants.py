"""The clearing house's invariants, checked read-only against one consistent snapshot.

``invariants_check`` runs every check in one READ ONLY, REPEATABLE READ transaction (when it is not
nested in a caller's), so a running system is judged on one instant: an auction committing between
two checks cannot show up as a false violation. The database checks are SQL aggregates; only the
values that need the contracts' terms (order values, lockups) are recomputed in Python with the
same rules the services use, once per distinct input.

With a chain (the FundLock contract through ``FundLockClient``), fund locks are compared with the
contract's balances at the block the deposit monitor has reached (clients with a settlement batch
in flight, or confirmed above that block, are left for a later run), and every batch the database
holds confirmed must be applied on chain. Nothing here writes, to the database or the chain.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from ccp.contracts.models import Contract, ContractState, TradingMode
from ccp.contracts.payoffs import ContractKind, Leg
from ccp.money import ZERO, money_str
from ccp.orders.rules import order_held
from ccp.orders.states import HOLDING_STATES, OPEN_STATES
from ccp.risk.collateral import AVAILABLE_SQL
from ccp.risk.lockups import lockups_required
from ccp.settlement.chain.client import FundLockClient
from ccp.settlement.chain.connect import fund_lock_client
from ccp.settlement.models import BALANCED_ORIGINS, BatchState, CashMovementOrigin, ChainContract, TrackingState
from ccp.settlement.services import DEPOSITS_EDGE


@dataclass(frozen=True)
class Violation:
    check: str  # stable name of the invariant, e.g. "movements_not_balanced"
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # rows looked at, for the summary

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self) -> dict[str, list[Violation]]:
        """Every check run, in order, with its violations (none: it holds)."""
        found: dict[str, list[Violation]] = {name: [] for name in self.checks}
        for violation in self.violations:
            found.setdefault(violation.check, []).append(violation)
        return found

    def summary(self) -> str:
        seen = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if self.ok:
            return f"ccp_check: {len(self.checks)} invariants hold ({seen})"
        return f"ccp_check: {len(self.violations)} violations of {len(self.checks)} invariants ({seen})"


def _rows(sql: str, params: Iterable = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def _orders(first_id: int, count: int) -> str:
    return f"order {first_id}" if count == 1 else f"order {first_id} and {count - 1} more alike"


def _m(value: Decimal | None) -> str:
    return money_str(value if value is not None else ZERO)


# --- journals -------------------------------------------------------------------------------

def movements_balanced() -> list[Violation]:
    """Cash movements of each auction, book batch, expiry, variation settlement, funding, liquidation trade and
    liquidation fee sum to zero per currency."""
    rows = _rows("""
        SELECT m.origin, m.origin_ref, c.symbol, SUM(m.amount)
        FROM settlement_cashmovement m JOIN contracts_currency c ON c.id = m.currency_id
        WHERE m.origin = ANY(%s) GROUP BY 1, 2, 3 HAVING SUM(m.amount) <> 0 ORDER BY 1, 2, 3""",
                 [[str(o) for o in BALANCED_ORIGINS]])
    return [Violation("movements_not_balanced", f"{origin} {ref}: {symbol} movements sum to {_m(total)}, not 0")
            for origin, ref, symbol, total in rows]


def positions_balanced() -> list[Violation]:
    """Every contract's positions sum to zero: each long has its short."""
    rows = _rows("""
        SELECT k.symbol, SUM(p.quantity) FROM risk_position p JOIN contracts_contract k ON k.id = p.contract_id
        GROUP BY k.symbol HAVING SUM(p.quantity) <> 0 ORDER BY 1""")
    return [Violation("positions_not_balanced", f"{symbol}: positions sum to {_m(total)}, not 0")
            for symbol, total in rows]


def positions_journaled() -> list[Violation]:
    """Each position equals the sum of its cash movements' position changes: nothing moved a
    position without a journal line (or booked a line twice)."""
    rows = _rows("""
        SELECT COALESCE(p.client_id, j.client_id), COALESCE(p.contract_id, j.contract_id),
               COALESCE(p.quantity, 0), COALESCE(j.quantity, 0)
        FROM risk_position p
        FULL OUTER JOIN (SELECT client_id, contract_id, SUM(position_delta) AS quantity
                         FROM settlement_cashmovement WHERE contract_id IS NOT NULL GROUP BY 1, 2) j
          ON j.client_id = p.client_id AND j.contract_id = p.contract_id
        WHERE COALESCE(p.quantity, 0) <> COALESCE(j.quantity, 0) ORDER BY 1, 2""")
    return [Violation("position_not_journaled", f"client {client_id} contract {contract_id}: position "
                      f"{_m(held)}, its cash movements' position changes sum to {_m(journaled)}")
            for client_id, contract_id, held, journaled in rows]


def positions_pnl_journaled() -> list[Violation]:
    """Each position's realised PnL less its cost equals the sum of its cash movements
    (``ccp.risk.positions``): PnL is never made up, and no premium or payoff is left out of it. A
    perpetual's cost counts from its reference price (``ccp.perps.accounting``: cost - quantity x R), and its
    funding and liquidation fees are not PnL."""
    rows = _rows("""
        SELECT p.client_id, p.contract_id, p.realised_pnl - p.cost + p.quantity * COALESCE(v.settle_px, 0),
               COALESCE(j.amount, 0) FROM risk_position p
        LEFT JOIN perps_perpetual v ON v.contract_id = p.contract_id
        LEFT JOIN (SELECT client_id, contract_id, SUM(amount) AS amount FROM settlement_cashmovement
                   WHERE contract_id IS NOT NULL AND origin <> ALL(%s) GROUP BY 1, 2) j
          ON j.client_id = p.client_id AND j.contract_id = p.contract_id
        WHERE p.realised_pnl - p.cost + p.quantity * COALESCE(v.settle_px, 0) <> COALESCE(j.amount, 0)
        ORDER BY 1, 2""", [[CashMovementOrigin.FUNDING, CashMovementOrigin.LIQUIDATION_FEE,
                             CashMovementOrigin.INSURANCE]])
    return [Violation("position_pnl_not_journaled", f"client {client_id} contract {contract_id}: realised PnL "
                      f"- cost {_m(held)}, its cash movements sum to {_m(journaled)}")
            for client_id, contract_id, held, journaled in rows]


def no_position_on_settled_contract() -> list[Violation]:
    rows = _rows("""
        SELECT p.client_id, k.symbol, p.quantity FROM risk_position p JOIN contracts_contract k ON k.id = p.contract_id
        WHERE k.state = %s AND p.quantity <> 0 ORDER BY 2, 1""", [ContractState.SETTLED])
    return [Violation("position_on_settled_contract", f"client {client_id} holds {_m(quantity)} of {symbol}, "
                      "which is settled") for client_id, symbol, quantity in rows]


# --- order values ---------------------------------------------------------------------------

def order_values(contracts: Callable[[], dict[int, Contract]]) -> list[Violation]:
    """An open (validated) order holds the value of its remaining quantity (``orders.rules.order_value``);
    any other order holds nothing. An auction order on a dated contract holds what it added to its
    portfolio at entry, which depends on the positions then (``orders.rules.order_value_netted``): its
    stored value is checked to lie between 0 and its remainder's stand-alone worst case (the fund lock
    check sums the stored values). Orders are grouped by what the value depends on, so each distinct
    (contract, side, price, remaining) is computed once."""
    rows = _rows("""
        SELECT o.contract_id, o.side, o.price, o.quantity - o.filled_quantity, o.order_value, o.state = ANY(%s),
               o.attached::text, o.leverage, o.reduce_only, k.trading_mode = %s AND k.kind <> %s, COUNT(*),
               MIN(o.id)
        FROM orders_order o JOIN contracts_contract k ON k.id = o.contract_id
        WHERE o.state = ANY(%s) OR o.order_value <> 0
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 ORDER BY 12""",
                 [sorted(HOLDING_STATES), TradingMode.AUCTION, ContractKind.PERPETUAL, sorted(HOLDING_STATES)])
    terms = {pk: c.terms for pk, c in contracts().items()}

    @functools.cache
    def expected(contract_id: int, side: str, price: Decimal, remaining: Decimal, attached: str | None,
                 leverage: Decimal | None, reduce_only: bool) -> Decimal:
        return order_held(terms[contract_id], side, price, remaining, attached and json.loads(attached),
                          leverage=leverage, reduce_only=reduce_only)

    violations = []
    for (contract_id, side, price, remaining, held, on_book, attached, leverage, reduce_only, netted, count,
         first_id) in rows:
        try:
            want = expected(contract_id, side, price, remaining, attached, leverage, reduce_only) if on_book else ZERO
        except ValueError as exc:  # e.g. a price outside the contract's bounds
            violations.append(Violation("order_value_wrong", f"{_orders(first_id, count)}: no value ({exc})"))
            continue
        if netted and on_book and ZERO <= held <= want:
            continue
        if held != want:
            bound = f"at most {_m(want)}" if netted and on_book else f"should be {_m(want)}"
            violations.append(Violation("order_value_wrong", f"{_orders(first_id, count)}: order value {_m(held)}, "
                                        f"{bound} ({side} {_m(remaining)} left at {_m(price)})"))
    return violations


def _fund_lock_differences(column: str, sums: str, params: Iterable = ()) -> list[tuple]:
    """(client, currency, the fund lock's ``column``, the total ``sums`` gives) where they differ;
    ``sums`` selects (client_id, currency_id, total). A missing fund lock or total counts as 0."""
    return _rows(f"""
        SELECT COALESCE(f.client_id, s.client_id), COALESCE(f.currency_id, s.currency_id),
               COALESCE(f.{column}, 0), COALESCE(s.total, 0)
        FROM accounts_fundlock f
        FULL OUTER JOIN ({sums}) s ON s.client_id = f.client_id AND s.currency_id = f.currency_id
        WHERE COALESCE(f.{column}, 0) <> COALESCE(s.total, 0) ORDER BY 1, 2""", params)


def fund_lock_order_values() -> list[Violation]:
    """A fund lock's order value is the sum of its client's open orders' stored values in that currency
    plus what running auctions reserved of it (``matching.AuctionReservation`` not yet released)."""
    rows = _fund_lock_differences("order_value", """
        SELECT client_id, currency_id, SUM(total) AS total FROM (
            SELECT o.client_id, k.collateral_id AS currency_id, SUM(o.order_value) AS total
            FROM orders_order o JOIN contracts_contract k ON k.id = o.contract_id
            WHERE o.state = ANY(%s) AND o.order_value <> 0 GROUP BY 1, 2
            UNION ALL
            SELECT client_id, currency_id, SUM(amount) FROM matching_auctionreservation
            WHERE released_at IS NULL AND amount <> 0 GROUP BY 1, 2) AS held
        GROUP BY 1, 2""", [sorted(OPEN_STATES)])
    return [Violation("fund_lock_order_value_wrong", f"client {client_id} currency {currency_id}: order value "
                      f"{_m(held)}, its open orders and auction reservations hold {_m(total)}")
            for client_id, currency_id, held, total in rows]


# --- lockups --------------------------------------------------------------------------------

def lockups(contracts: Callable[[], dict[int, Contract]]) -> list[Violation]:
    """Each lockup equals its portfolio's lockup recomputed from the positions (``ccp.risk.lockups``,
    the booking's rule); a portfolio that needs collateral has a lockup."""
    every = contracts()
    legs: dict[tuple[int, int, object], list[Leg]] = defaultdict(list)
    for client_id, contract_id, quantity in _rows(  # a perpetual is margined, never locked up
            "SELECT p.client_id, p.contract_id, p.quantity FROM risk_position p JOIN contracts_contract k "
            "ON k.id = p.contract_id WHERE p.quantity <> 0 AND k.kind <> %s ORDER BY p.id", ["perpetual"]):
        contract = every[contract_id]
        legs[(client_id, contract.pair_id, contract.expiry_date)].append(Leg(contract.terms, quantity))
    stored = {(client_id, pair_id, expiry): amount for client_id, pair_id, expiry, amount in _rows(
        "SELECT client_id, pair_id, expiry_date, amount FROM risk_lockup")}
    amounts = lockups_required({key: legs.get(key, []) for key in sorted(set(legs) | set(stored))})
    violations = []
    for key, want in amounts.items():
        held = stored.get(key, ZERO)
        if held != want:
            client_id, pair_id, expiry = key
            violations.append(Violation("lockup_wrong", f"client {client_id} pair {pair_id} expiry {expiry}: "
                                        f"lockup {_m(held)}, its positions need {_m(want)}"))
    return violations


def fund_lock_lockups() -> list[Violation]:
    """A fund lock's lockup value is the sum of its client's lockups in that currency."""
    rows = _fund_lock_differences("lockup_value", "SELECT client_id, currency_id, SUM(amount) AS total "
                                                  "FROM risk_lockup GROUP BY 1, 2")
    return [Violation("fund_lock_lockups_wrong", f"client {client_id} currency {currency_id}: lockup value "
                      f"{_m(held)}, its lockups sum to {_m(total)}") for client_id, currency_id, held, total in rows]


def fund_lock_margins() -> list[Violation]:
    """A fund lock's margin value is what its client's perpetual positions in that currency hold:
    margin - (cost - quantity x the perpetual's reference price) each (``ccp.perps.accounting``)."""
    rows = _fund_lock_differences("margin_value", """
        SELECT p.client_id, k.collateral_id AS currency_id,
               SUM(p.margin - (p.cost - p.quantity * COALESCE(v.settle_px, 0))) AS total
        FROM risk_position p JOIN contracts_contract k ON k.id = p.contract_id
        JOIN perps_perpetual v ON v.contract_id = k.id GROUP BY 1, 2""")
    return [Violation("fund_lock_margin_wrong", f"client {client_id} currency {currency_id}: margin value "
                      f"{_m(held)}, its perpetual positions hold {_m(total)}")
            for client_id, currency_id, held, total in rows]


# --- settle values and collateral -----------------------------------------------------------

def settle_values() -> list[Violation]:
    """A fund lock's settle value is the sum of its client's cash movements not yet confirmed on chain
    (confirmation moves an amount from settle value into fundlock)."""
    rows = _fund_lock_differences("settle_value", """
        SELECT client_id, currency_id, SUM(amount) AS total FROM settlement_cashmovement m
        WHERE NOT EXISTS (SELECT 1 FROM settlement_cashmovementtracking t
                          WHERE t.cash_movement_id = m.id AND t.state = %s)
        GROUP BY 1, 2""", [TrackingState.CONFIRMED])
    return [Violation("settle_value_wrong", f"client {client_id} currency {currency_id}: settle value {_m(held)}, "
                      f"its unconfirmed cash movements sum to {_m(total)}")
            for client_id, currency_id, held, total in rows]


def available_non_negative() -> list[Violation]:
    rows = _rows(f"""
        SELECT client_id, currency_id, {AVAILABLE_SQL} FROM accounts_fundlock
        WHERE {AVAILABLE_SQL} < 0 AND NOT insurance_fund ORDER BY 1, 2""")  # the fund's is alerted instead
    return [Violation("available_negative", f"client {client_id} currency {currency_id}: available {_m(available)}")
            for client_id, currency_id, available in rows]


# --- the chain ------------------------------------------------------------------------------

def chain_balances(chain: FundLockClient) -> tuple[list[Violation], int]:
    """Fund locks equal the contract's balances at the deposit monitor's block (as reconciliation
    compares them), for clients with nothing in flight. Returns the violations and how many fund
    locks were compared."""
    edge = _rows("SELECT block_number FROM system_edge WHERE name = %s", [DEPOSITS_EDGE])
    if not edge or edge[0][0] is None:
        return [], 0
    block = edge[0][0]
    rows = _rows("""
        SELECT f.client_id, a.address, c.symbol, c.token_address, c.decimals, f.fundlock
        FROM accounts_fundlock f JOIN accounts_client a ON a.id = f.client_id
        JOIN contracts_currency c ON c.id = f.currency_id
        WHERE c.token_address IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM settlement_cashmovementtracking t JOIN settlement_cashmovement m ON m.id = t.cash_movement_id
            WHERE m.client_id = f.client_id AND m.currency_id = f.currency_id
              AND (t.state = %s OR (t.state = %s AND t.block_number > %s)))
        ORDER BY f.id""", [TrackingState.SUBMITTED, TrackingState.CONFIRMED, block])
    violations = []
    for client_id, address, symbol, token, decimals, fundlock in rows:
        on_chain = Decimal(chain.balance(token, address, block)).scaleb(-decimals)
        if on_chain != fundlock:
            violations.append(Violation("fund_lock_differs_from_chain", f"client {client_id} ({address}) {symbol}: "
                                        f"fundlock {_m(fundlock)}, the contract holds {_m(on_chain)} at block {block}"))
    return violations, len(rows)


def chain_batches(chain: FundLockClient) -> tuple[list[Violation], int]:
    """Every batch the database holds confirmed was applied by the contract."""
    rows = _rows("SELECT id, batch_id, tx_hash FROM settlement_settlementbatch WHERE state = %s ORDER BY id",
                 [BatchState.CONFIRMED])
    violations = [Violation("confirmed_batch_not_applied", f"settlement batch {pk} ({batch_id}, tx {tx_hash}) is "
                            "confirmed here but not applied on chain")
                  for pk, batch_id, tx_hash in rows if not chain.applied(bytes.fromhex(batch_id[2:]))]
    return violations, len(rows)


# --- all of them ----------------------------------------------------------------------------

def _counts() -> dict[str, int]:
    (row,) = _rows("""SELECT (SELECT COUNT(*) FROM orders_order), (SELECT COUNT(*) FROM accounts_fundlock),
                             (SELECT COUNT(*) FROM risk_position WHERE quantity <> 0),
                             (SELECT COUNT(*) FROM risk_lockup), (SELECT COUNT(*) FROM settlement_cashmovement)""")
    return dict(zip(["orders", "fund locks", "positions", "lockups", "cash movements"], row, strict=True))


def invariants_chain() -> FundLockClient | None:
    """The chain the chain checks read: the node at ``CCP_CHAIN_URL`` and the deployed FundLock; None
    when either is missing. Nothing is asked of the node yet."""
    deployed = ChainContract.objects.filter(name="FundLock").first()
    if not settings.CCP_CHAIN_URL or deployed is None:
        return None
    return fund_lock_client(settings.CCP_CHAIN_URL, deployed.address)


def invariants_check(*, chain: FundLockClient | None = None) -> Report:
    """Run every check on one snapshot; with ``chain``, the chain checks too. Read-only."""
    report = Report()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # one snapshot for every check; inside a caller's transaction, that one is used
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        contracts = functools.cache(lambda: Contract.objects.in_bulk())
        checks: list[tuple[str, Callable[[], list[Violation]]]] = [
            ("movements_not_balanced", movements_balanced),
            ("positions_not_balanced", positions_balanced),
            ("position_not_journaled", positions_journaled),
            ("position_pnl_not_journaled", positions_pnl_journaled),
            ("position_on_settled_contract", no_position_on_settled_contract),
            ("order_value_wrong", lambda: order_values(contracts)),
            ("fund_lock_order_value_wrong", fund_lock_order_values),
            ("lockup_wrong", lambda: lockups(contracts)),
            ("fund_lock_lockups_wrong", fund_lock_lockups),
            ("fund_lock_margin_wrong", fund_lock_margins),
            ("settle_value_wrong", settle_values),
            ("available_negative", available_non_negative),
        ]
        for name, check in checks:
            report.checks.append(name)
            report.violations.extend(check())
        report.counts = _counts()
        if chain is not None:
            balances, compared = chain_balances(chain)
            batches, confirmed = chain_batches(chain)
            report.checks += ["fund_lock_differs_from_chain", "confirmed_batch_not_applied"]
            report.violations += balances + batches
            report.counts.update({"fund locks on chain": compared, "confirmed batches": confirmed})
    return report

