"""An auction's input and result, and their JSON documents. Pure: no ORM.

Input document (``format: "ccp-auction-input/1"``), every number a decimal string:

    {"format": "ccp-auction-input/1",
     "auction": "BTC/USDC 2026-11-21T10:00:00Z",          # any label
     "settings": {"time_limit_s": "60", "mip_rel_gap": "0.0001", "simplex_iteration_limit": "1000000",
                  "mip_max_nodes": "1000", "exact_stage_gap": "0.001"},
     "contracts": [{"symbol": "BTC-USDC-20261225-100000-C", "kind": "call", "strike": "100000",
                    "floor": "50000", "cap": "150000", "tick": "1", "lot": "0.01",
                    "portfolio": "BTC/USDC 2026-12-25", "reference_price": "2100"}],
     "clients": [{"id": "0xabc…", "budget": "25000",
                  "positions": {"BTC-USDC-20261225-100000-C": "-0.5"}}],
     "orders": [{"id": "17", "client": "0xabc…", "contract": "BTC-USDC-20261225-100000-C",
                 "side": "buy", "price": "2100", "quantity": "0.3", "priority": 17}]}

- ``budget``: the collateral the auction may use for the client. The live system writes its lockups of
  the portfolios it trades here, plus what its orders in this auction hold (netted at entry), plus the
  free collateral reserved for it at the close, up to its orders' stand-alone worst cases
  (``ccp/matching/services.py``: the budget rule); a document written by hand may give any amount.
- ``positions``: the client's current positions in those portfolios (every contract named there is
  listed in ``contracts``). ``quantity`` of an order is what is still open; ``priority`` orders time
  (lower is earlier). Premiums in the collateral check are taken at the limit price (the clearing
  price is never worse for the client), lockups at the kink points of each portfolio.

- ``settings``: the work limits decide the result (``simplex_iteration_limit`` per LP solve,
  ``mip_max_nodes`` per MIP stage, ``exact_stage_gap``: the exact price-choice stage runs only while
  the best answer is further than this from the bound); ``time_limit_s`` is a wall-clock guard only;
  ``mip_rel_gap`` is HiGHS' own. Every key is optional; a document without the work limits (stored
  before issue 14) clears with the defaults shown, and its ``time_limit_s`` is the guard.

Result document (``format: "ccp-auction-result/1"``): ``prices`` (symbol -> clearing price, for
contracts that traded), ``fills`` ([{order, quantity, price}] by order id), ``welfare`` (sum of filled
quantity x limit price, buys minus sells), ``upper_bound`` (the LP relaxation's welfare or a MIP's bound,
floored to the welfare grid: no solution can beat it), ``status`` (``optimal``: proven; ``feasible``: a
solver's answer below the bound; ``fallback``: the simple clearing with collateral kept), ``gap``
(1 - welfare / upper_bound), ``method`` (the answer kept, ``ccp/matching/engine.py``), ``solver``,
``binding_clients``; since issue 14 also ``fallback_welfare`` (the simple clearing's welfare: the result
is never below it), ``candidates`` (each answer's welfare after the repair), ``terminations`` (solver
stage -> how it ended: ``optimal``, ``maxIterations`` for a work limit, ``maxTimeLimit`` for the guard;
``<answer>_rejected`` -> why a solver's answer was refused),
``time_guard`` (whether the guard stopped a stage: only then may a replay differ) and ``reasons`` (why
each order is open or partly open, ids grouped by code: ``limit``, its limit is outside the clearing
price, or nothing it could afford crossed it; ``collateral``, its client cannot afford one more lot;
``priority``, its limit reaches the price but the volume went to orders ahead of it in price-time
priority; ``halted``, the contract stopped trading before the apply: set by ``reasons_halted``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from ccp.contracts.payoffs import ContractKind, Terms
from ccp.money import money_str

INPUT_FORMAT = "ccp-auction-input/1"
RESULT_FORMAT = "ccp-auction-result/1"


@dataclass(frozen=True)
class AuctionSettings:
    """How hard the engine works. The limits in work (``simplex_iteration_limit`` per LP solve,
    ``mip_max_nodes`` per MIP stage) decide the result; ``time_limit_s`` is a wall-clock guard only."""

    time_limit_s: Decimal = Decimal("60")
    # HiGHS' own default: a MIP stage stops once its answer is proven within 0.01% of the best possible.
    mip_rel_gap: Decimal = Decimal("0.0001")
    simplex_iteration_limit: int = 1_000_000
    mip_max_nodes: int = 1_000
    # The exact price-choice stage runs only while the best answer is further than this from the bound.
    exact_stage_gap: Decimal = Decimal("0.001")


@dataclass(frozen=True)
class ContractSpec:
    symbol: str
    terms: Terms
    tick: Decimal
    lot: Decimal
    portfolio: str
    reference_price: Decimal | None = None


@dataclass(frozen=True)
class ClientSpec:
    id: str
    budget: Decimal
    positions: dict[str, Decimal] = field(default_factory=dict)


class OrderSpec(NamedTuple):
    """An order of the input (immutable). A named tuple, not a frozen dataclass: an auction reads a hundred
    thousand, and a frozen dataclass's __init__ costs three times as much."""

    id: str
    client: str
    contract: str
    side: str  # "buy" | "sell"
    price: Decimal
    quantity: Decimal
    priority: int


@dataclass(frozen=True)
class AuctionInput:
    contracts: tuple[ContractSpec, ...]
    clients: tuple[ClientSpec, ...]
    orders: tuple[OrderSpec, ...]
    settings: AuctionSettings = AuctionSettings()
    label: str = ""


class Fill(NamedTuple):
    """An order's fill in a result (immutable; a named tuple, as OrderSpec)."""

    order: str
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True)
class AuctionResult:
    prices: dict[str, Decimal]
    fills: tuple[Fill, ...]
    welfare: Decimal
    upper_bound: Decimal
    status: str  # optimal | feasible | fallback
    method: str
    solver: str
    binding_clients: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    reasons: dict[str, str] = field(default_factory=dict)  # order id -> why it is (partly) open (REASONS)
    fallback_welfare: Decimal | None = None  # the welfare of the fallback clearing of the same input
    terminations: dict[str, str] = field(default_factory=dict)  # solver stage -> how it ended
    candidates: dict[str, Decimal] = field(default_factory=dict)  # answer -> its welfare after the repair

    @property
    def time_guard(self) -> bool:
        """Whether the wall-clock guard stopped a solver stage: only then may a replay differ."""
        return "maxTimeLimit" in self.terminations.values()

    @property
    def gap(self) -> Decimal:
        return auction_gap(self.welfare, self.upper_bound)


def auction_gap(welfare: Decimal, upper_bound: Decimal) -> Decimal:
    """1 - welfare / upper bound (0 when the bound is not positive)."""
    if upper_bound <= 0:
        return Decimal(0)
    return max(Decimal(0), 1 - welfare / upper_bound)


def _dec(value: Any, what: str) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"{what}: numbers are decimal strings, got {value!r}")
    try:
        number = Decimal(value)
    except ArithmeticError as exc:
        raise ValueError(f"{what}: not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"{what}: not finite: {value!r}")
    return number


def input_from_document(doc: dict) -> AuctionInput:
    """Parse and check an input document; ValueError with the first problem found."""
    if doc.get("format") != INPUT_FORMAT:
        raise ValueError(f"format must be {INPUT_FORMAT!r}")
    settings = doc.get("settings", {})
    contracts = []
    for c in doc["contracts"]:
        strike = _dec(c["strike"], f"{c['symbol']}.strike") if c.get("strike") is not None else None
        terms = Terms(kind=ContractKind(c["kind"]), floor=_dec(c["floor"], "floor"), cap=_dec(c["cap"], "cap"),
                      strike=strike)
        reference = c.get("reference_price")
        contracts.append(ContractSpec(
            symbol=c["symbol"], terms=terms, tick=_dec(c["tick"], "tick"), lot=_dec(c["lot"], "lot"),
            portfolio=c["portfolio"], reference_price=_dec(reference, "reference_price") if reference else None))
    symbols = {c.symbol for c in contracts}
    clients = []
    for c in doc["clients"]:
        positions = {s: _dec(q, f"{c['id']}.positions") for s, q in c.get("positions", {}).items()}
        if unknown := set(positions) - symbols:
            raise ValueError(f"client {c['id']}: positions in unlisted contracts {sorted(unknown)}")
        clients.append(ClientSpec(id=str(c["id"]), budget=_dec(c["budget"], f"{c['id']}.budget"),
                                  positions=positions))
    client_ids = {c.id for c in clients}
    raw = doc["orders"]
    orders = _orders_read(raw, symbols, client_ids)
    if orders is None:  # something is wrong: read again, order by order, to name the first problem
        orders = _orders_checked(raw, symbols, client_ids)
    if len({o.id for o in orders}) != len(orders):
        raise ValueError("order ids must be unique")
    return AuctionInput(
        contracts=tuple(contracts), clients=tuple(clients), orders=tuple(orders), label=str(doc.get("auction", "")),
        settings=AuctionSettings(
            time_limit_s=_dec(settings.get("time_limit_s", str(AuctionSettings.time_limit_s)), "settings.time_limit_s"),
            mip_rel_gap=_dec(settings.get("mip_rel_gap", str(AuctionSettings.mip_rel_gap)), "settings.mip_rel_gap"),
            simplex_iteration_limit=_count(settings, "simplex_iteration_limit"),
            mip_max_nodes=_count(settings, "mip_max_nodes"),
            exact_stage_gap=_dec(settings.get("exact_stage_gap", str(AuctionSettings.exact_stage_gap)),
                                 "settings.exact_stage_gap")),
    )


def _count(settings: dict, name: str) -> int:
    """A work limit of the settings (a whole number as a decimal string), its default when absent."""
    if name not in settings:
        return getattr(AuctionSettings, name)
    number = _dec(settings[name], f"settings.{name}")
    if number != number.to_integral_value() or number < 0 or number > 2**31 - 1:
        raise ValueError(f"settings.{name}: a whole number from 0 to 2147483647, got {settings[name]!r}")
    return int(number)


class _Numbers(dict):
    """Decimal text -> its finite Decimal, parsed on first use (prices and quantities repeat); anything
    else raises ValueError."""

    def __missing__(self, value: str) -> Decimal:
        if not isinstance(value, str):
            raise ValueError(value)
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(value)
        self[value] = number
        return number


def _orders_read(raw: list, symbols: set[str], client_ids: set[str]) -> list[OrderSpec] | None:
    """The orders of a document, or None when one breaks a rule (``_orders_checked`` names it): one pass
    without a check per field, for the hundred thousand orders of a sound document."""
    numbers = _Numbers()
    try:
        orders = [OrderSpec(str(o["id"]), str(o["client"]), o["contract"], o["side"], numbers[o["price"]],
                            numbers[o["quantity"]], int(o["priority"])) for o in raw]
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    if any(o.side not in ("buy", "sell") or o.contract not in symbols or o.client not in client_ids
           or o.quantity <= 0 for o in orders):
        return None
    return orders


def _orders_checked(raw: list, symbols: set[str], client_ids: set[str]) -> list[OrderSpec]:
    """The orders of a document, checked one by one: ValueError (or KeyError) with the first problem."""
    numbers: dict[str, Decimal] = {}  # prices and quantities repeat: each text is parsed once

    def number(o: dict, name: str) -> Decimal:
        value = o[name]
        if isinstance(value, str) and (parsed := numbers.get(value)) is not None:
            return parsed
        parsed = numbers[value] = _dec(value, f"order {o.get('id')}.{name}")
        return parsed

    orders = []
    for o in raw:
        order = OrderSpec(id=str(o["id"]), client=str(o["client"]), contract=o["contract"], side=o["side"],
                          price=number(o, "price"), quantity=number(o, "quantity"), priority=int(o["priority"]))
        if order.side not in ("buy", "sell"):
            raise ValueError(f"order {order.id}: side must be buy or sell")
        if order.contract not in symbols or order.client not in client_ids:
            raise ValueError(f"order {order.id}: unknown contract or client")
        if order.quantity <= 0:
            raise ValueError(f"order {order.id}: quantity must be positive")
        orders.append(order)
    return orders


def input_to_document(auction: AuctionInput) -> dict:
    def opt(value: Decimal | None) -> str | None:
        return None if value is None else money_str(value)

    return {
        "format": INPUT_FORMAT,
        "auction": auction.label,
        "settings": {"time_limit_s": money_str(auction.settings.time_limit_s),
                     "mip_rel_gap": money_str(auction.settings.mip_rel_gap),
                     "simplex_iteration_limit": str(auction.settings.simplex_iteration_limit),
                     "mip_max_nodes": str(auction.settings.mip_max_nodes),
                     "exact_stage_gap": money_str(auction.settings.exact_stage_gap)},
        "contracts": [{"symbol": c.symbol, "kind": c.terms.kind.value, "strike": opt(c.terms.strike),
                       "floor": money_str(c.terms.floor), "cap": money_str(c.terms.cap), "tick": money_str(c.tick),
                       "lot": money_str(c.lot), "portfolio": c.portfolio, "reference_price": opt(c.reference_price)}
                      for c in auction.contracts],
        "clients": [{"id": c.id, "budget": money_str(c.budget),
                     "positions": {s: money_str(q) for s, q in sorted(c.positions.items())}}
                    for c in auction.clients],
        "orders": order_entries((o.id, o.client, o.contract, o.side, o.price, o.quantity, o.priority)
                                for o in auction.orders),
    }


def order_entries(rows: Iterable[tuple[str, str, str, str, Decimal, Decimal, int]]) -> list[dict]:
    """The ``orders`` of an input document from (id, client, contract, side, price, quantity,
    priority) rows; prices and quantities repeat, so each is formatted once."""
    text: dict[Decimal, str] = {}

    def number(value: Decimal) -> str:
        if (formatted := text.get(value)) is None:
            formatted = text[value] = money_str(value)
        return formatted

    return [{"id": order_id, "client": client, "contract": contract, "side": side, "price": number(price),
             "quantity": number(quantity), "priority": priority}
            for order_id, client, contract, side, price, quantity, priority in rows]


def canonical_json(doc: Any) -> str:
    """The canonical text of a document: sorted keys, no spaces, ASCII."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class _Encoded(dict):
    """str -> its JSON text, encoded on first use."""

    def __missing__(self, value: str) -> str:
        encoded = self[value] = json.dumps(value)
        return encoded


def input_text(document: dict, orders: Iterable[tuple[int, str, str, str, str, str, int]]) -> str:
    """``canonical_json`` of ``document`` with its ``orders`` (as ``order_entries`` makes them) from
    (id, client, contract, side, price, quantity, priority) rows, the id and priority as integers, the
    price and quantity as their ``money_str`` text. The same text, written directly: an auction's close
    would otherwise build, sort and encode a hundred thousand dicts."""
    text = _Encoded()  # clients, contracts, sides, prices and quantities repeat: each is encoded once
    # The keys of an order entry in sorted order, as canonical_json writes them.
    entries = ",".join([
        f'{{"client":{text[client]},"contract":{text[contract]},"id":"{order_id:d}","price":{text[price]},'
        f'"priority":{priority:d},"quantity":{text[quantity]},"side":{text[side]}}}'
        for order_id, client, contract, side, price, quantity, priority in orders])
    return "{" + ",".join(f'"orders":[{entries}]' if key == "orders" else f"{json.dumps(key)}:{canonical_json(value)}"
                          for key, value in sorted({**document, "orders": None}.items())) + "}"


def document_hash(doc: dict) -> str:
    """SHA-256 of the canonical JSON: the auction's identity."""
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def result_to_document(result: AuctionResult) -> dict:
    text = functools.lru_cache(maxsize=4096)(money_str)  # fills share prices and quantities
    grouped: dict[str, list[str]] = defaultdict(list)
    for order_id, code in result.reasons.items():
        grouped[code].append(order_id)
    return {
        "format": RESULT_FORMAT,
        "status": result.status,
        "method": result.method,
        "solver": result.solver,
        "welfare": money_str(result.welfare),
        "upper_bound": money_str(result.upper_bound),
        "gap": format(result.gap.quantize(Decimal("1e-9")), "f"),
        "prices": {s: money_str(p) for s, p in sorted(result.prices.items())},
        "fills": [{"order": f.order, "quantity": text(f.quantity), "price": text(f.price)} for f in result.fills],
        "binding_clients": list(result.binding_clients),
        "fallback_welfare": money_str(result.welfare if result.fallback_welfare is None else result.fallback_welfare),
        "terminations": dict(sorted(result.terminations.items())),
        "candidates": {name: money_str(w) for name, w in sorted(result.candidates.items())},
        "time_guard": result.time_guard,
        # Grouped by reason, ids in the fills' order: a hundred thousand open orders stay a small text.
        "reasons": {code: sorted(grouped[code], key=order_id_key) for code in REASONS if code in grouped},
    }


REASONS = ("limit", "collateral", "priority", "halted")


def order_id_key(order_id: str) -> tuple:
    return (0, int(order_id), "") if order_id.isdigit() else (1, 0, order_id)


def reasons_from_document(doc: dict) -> dict[str, str]:
    """order id -> reason of a result document (empty for documents written before reasons existed)."""
    return {order_id: code for code, ids in doc.get("reasons", {}).items() for order_id in ids}


def reasons_halted(reasons: dict[str, str], orders: Iterable[tuple[str, str]], halted: set[str]) -> dict[str, str]:
    """``reasons`` with every order on a contract no longer trading (``halted`` symbols) as ``halted``:
    the apply books none of their fills. ``orders``: (order id, contract symbol) of the auction."""
    return {**reasons, **{order_id: "halted" for order_id, symbol in orders if symbol in halted}}
