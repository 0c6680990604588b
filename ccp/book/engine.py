"""The continuous matching engine: one contract's price-time order book, pure (no ORM, no I/O, no clock).

Inside, prices are integer ticks and quantities integer lots; `Scale` converts Decimal <-> ticks/lots at
the boundary and raises on any value that is not a whole number of ticks or lots. Time comes in with each
command (`at`) and is only copied onto trades. Same commands in, same events out: nothing depends on dict
order of user data, hashing or the wall clock.

Commands (`Engine.apply(command) -> list[event]`):
- `Submit`: a limit order (`price` = limit) or a market order (`price` = protection price, the worst
  acceptable; the leftover is cancelled `market_protection_leftover`, a market order never rests).
  Time in force: `gtc` (the leftover rests), `ioc` (the leftover is cancelled `ioc_leftover`), `fok`
  (all or nothing: rejected `fok_not_fillable` with no side effect unless the whole quantity fills now),
  `post_only` (rejected `post_only_would_take` when its price crosses the best opposite price).
  Market orders take `ioc` or `fok`. `reduce_only`: cut at entry to the user's position (rejected
  `reduce_only_nothing_to_reduce` when flat or on the same side); at every fill, taker or maker, a
  reduce-only order fills at most what still reduces the position, and when it meets the book with nothing
  left to reduce it is cancelled `reduce_only_nothing_to_reduce`. Self-trade prevention (`stp`, the
  incoming order's mode, checked when it meets a resting order of the same user): `cancel_resting`
  (cancel that resting order `self_trade_cancelled`, go on matching), `cancel_incoming` (cancel the rest of
  the incoming order `self_trade_cancelled`), `cancel_both`. Two orders of one user never trade.
  `tp` / `sl`: take-profit and stop-loss legs attached to the entry (see triggers).
- `Modify`: new `price` and/or new total `qty` (filled included) and/or new `tp` / `sl` legs of a resting
  order. A price change or a size increase loses time priority (the order re-enters: it may trade at
  once, a post-only order that would take is rejected and left unchanged); a size decrease alone keeps
  it; a size at or below the filled quantity cancels the rest `modified_below_filled`.
- `Cancel` (an order or a trigger, by id), `CancelAll` (a user's resting orders, then triggers, both in
  arrival order, optionally one side), `ClosePosition` (a reduce-only market order for the whole
  position, with a protection price), `PlaceTrigger` (a standalone stop or take-profit order),
  `SetPrice` (a new `mark` or `index` price; `last` moves with the engine's own trades).

Triggers. Each trigger has a price source (`mark`, `index`, `last`) and a direction: it fires when the
source is at or beyond its trigger price: a buy stop and a sell take-profit fire at or above, a sell stop
and a buy take-profit at or below. It then enters the book under its own id as a market order with a
protection price or as a limit order (gtc). A source without a price yet fires nothing.
- Attached legs (`Submit.tp`/`.sl`) are reduce-only orders on the opposite side of the entry, ids
  `<entry>:tp` and `<entry>:sl`. They arm at the entry's first fill, sized to the filled lots, and grow
  with each later fill (an `Armed` event with the new total each time). One leg firing cancels the other
  (`oco_sibling_triggered`) and ends the pair: later fills of the entry arm nothing. Cancelling the entry
  keeps armed legs (they protect the filled part); a leg cancelled by its id stays gone.
- Firing order. After every command, and again after every batch of fired orders, the engine scans all
  armed triggers whose source is crossed (a trigger already crossed when it arms is therefore fired in the
  same command, right after the order that armed it) and fires them in this order: the trigger crossed by
  the largest distance first (|source price - trigger price| in ticks, largest first: the order the price
  path met them in), then by arming sequence (a leg's re-arm by `Modify` takes a new sequence; growth
  does not). Each fired trigger emits `Triggered`, cancels its sibling, and its order is matched to the
  end before the next one fires. A trigger cancelled by an earlier one in the same batch does not fire.
  Trades of fired orders move `last` and may fire more triggers: they form the next batch.

Events: `Accepted`, `Rejected(reason)`, `Rested`, `Cancelled(reason)`, `Modified`, `Armed`, `Triggered`,
`Trade` (carrying both users' positions after the fill: the position changes). Reason codes are the
module-level constants below and never change.

`snapshot()` returns the resting orders in priority order, the armed triggers in arming order, positions,
prices and counters; `Engine.from_snapshot()` rebuilds an engine whose future events are identical.

Compiled. This file is plain Python and runs as it is; bin/bootstrap.sh also compiles it with mypyc
(bin/build_engine.py) into a C extension module that Python imports in its place, about 2.5 times faster. So the
annotations are enforced at run time when compiled (an `int` field given None raises TypeError), and: events spell
their `__init__` out (the generated one would run interpreted); the reason codes are `Final`; orders, triggers,
legs, commands and events are declared `acyclic` (the garbage collector does not track them), which holds because
nothing links back: a trigger names its sibling and its entry by id (tests/book/test_no_cycles.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from heapq import heappop, heappush
from typing import Final, TypeAlias

from mypy_extensions import mypyc_attr  # speaks to the compiler only: a no-op decorator in plain Python

# Reasons (stable codes).
POST_ONLY_WOULD_TAKE: Final = "post_only_would_take"
FOK_NOT_FILLABLE: Final = "fok_not_fillable"
REDUCE_ONLY_NOTHING: Final = "reduce_only_nothing_to_reduce"
SELF_TRADE_CANCELLED: Final = "self_trade_cancelled"
MARKET_PROTECTION_LEFTOVER: Final = "market_protection_leftover"
IOC_LEFTOVER: Final = "ioc_leftover"
OCO_SIBLING_TRIGGERED: Final = "oco_sibling_triggered"
MODIFIED_BELOW_FILLED: Final = "modified_below_filled"
CANCELLED: Final = "cancelled"
CANCEL_ALL: Final = "cancel_all"
UNKNOWN_ORDER: Final = "unknown_order"
NOT_OWNER: Final = "not_owner"
DUPLICATE_ORDER_ID: Final = "duplicate_order_id"
INVALID_QUANTITY: Final = "invalid_quantity"
INVALID_PRICE: Final = "invalid_price"
INVALID_TIME_IN_FORCE: Final = "invalid_time_in_force"
NO_POSITION: Final = "no_position"

# What `Scale` takes for a price or a quantity (a float is refused: never float).
Number: TypeAlias = Decimal | int | str
# A user as the caller names it (the venue passes client ids): only compared and used as a dict key.
UserId: TypeAlias = str | int

SIDES: Final = {"buy": 1, "sell": -1}
SIDE_NAMES: Final = {1: "buy", -1: "sell"}
TIFS: Final = ("gtc", "ioc", "fok", "post_only")
STP_MODES: Final = ("cancel_resting", "cancel_incoming", "cancel_both")
SOURCES: Final = ("last", "mark", "index")


class Scale:
    """Decimal <-> integer ticks and lots for one contract; raises on anything not a whole number of steps."""

    __slots__ = ("tick", "lot")

    def __init__(self, tick: Number, lot: Number = Decimal(1)):
        self.tick, self.lot = Decimal(tick), Decimal(lot)

    @staticmethod
    def _steps(value: Number, step: Decimal) -> int:
        steps, rest = divmod(Decimal(value), step)
        if rest:
            raise ValueError(f"{value} is not a multiple of {step}")
        return int(steps)

    def ticks(self, price: Number) -> int:
        return self._steps(price, self.tick)

    def lots(self, qty: Number) -> int:
        return self._steps(qty, self.lot)

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick

    def qty(self, lots: int) -> Decimal:
        return lots * self.lot


# Commands -------------------------------------------------------------------------------------------------

@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Leg:
    """An attached take-profit or stop-loss: its trigger, then a limit order or a market order with protection."""

    trigger_px: int
    source: str = "last"
    limit_px: int | None = None
    protection_px: int | None = None


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Submit:
    order_id: str
    user: UserId
    side: str
    qty: int
    kind: str = "limit"  # limit | market
    price: int | None = None  # limit price, or a market order's protection price
    tif: str = "gtc"
    reduce_only: bool = False
    stp: str = "cancel_incoming"
    tp: Leg | None = None
    sl: Leg | None = None
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class PlaceTrigger:
    """A standalone stop (`stop`) or take-profit (`take_profit`) order."""

    order_id: str
    user: UserId
    side: str
    qty: int
    kind: str  # stop | take_profit
    trigger_px: int
    source: str = "last"
    limit_px: int | None = None
    protection_px: int | None = None
    reduce_only: bool = False
    stp: str = "cancel_incoming"
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Modify:
    order_id: str
    user: UserId
    price: int | None = None
    qty: int | None = None
    tp: Leg | None = None
    sl: Leg | None = None
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Cancel:
    order_id: str
    user: UserId
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class CancelAll:
    user: UserId
    side: str | None = None
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class ClosePosition:
    order_id: str
    user: UserId
    protection_px: int | None  # None is rejected `invalid_price`
    stp: str = "cancel_incoming"
    at: int = 0


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class SetPrice:
    source: str  # mark | index
    price: int
    at: int = 0


# Events ---------------------------------------------------------------------------------------------------
# Each event spells its `__init__` out (the dataclass keeps it, and still gives repr, == and fields): compiled, the
# engine then builds an event with one direct call, where the generated `__init__` would run interpreted.

@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Accepted:
    order_id: str
    user: UserId
    side: str
    kind: str
    price: int | None
    qty: int

    def __init__(self, order_id: str, user: UserId, side: str, kind: str, price: int | None, qty: int) -> None:
        self.order_id = order_id
        self.user = user
        self.side = side
        self.kind = kind
        self.price = price
        self.qty = qty


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Rejected:
    order_id: str
    reason: str

    def __init__(self, order_id: str, reason: str) -> None:
        self.order_id = order_id
        self.reason = reason


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Rested:
    order_id: str
    price: int
    remaining: int

    def __init__(self, order_id: str, price: int, remaining: int) -> None:
        self.order_id = order_id
        self.price = price
        self.remaining = remaining


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Cancelled:
    order_id: str
    reason: str
    remaining: int

    def __init__(self, order_id: str, reason: str, remaining: int) -> None:
        self.order_id = order_id
        self.reason = reason
        self.remaining = remaining


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Modified:
    order_id: str
    price: int
    qty: int
    remaining: int
    kept_priority: bool

    def __init__(self, order_id: str, price: int, qty: int, remaining: int, kept_priority: bool) -> None:
        self.order_id = order_id
        self.price = price
        self.qty = qty
        self.remaining = remaining
        self.kept_priority = kept_priority


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Armed:
    trigger_id: str
    user: UserId
    side: str
    qty: int
    trigger_px: int
    source: str

    def __init__(self, trigger_id: str, user: UserId, side: str, qty: int, trigger_px: int, source: str) -> None:
        self.trigger_id = trigger_id
        self.user = user
        self.side = side
        self.qty = qty
        self.trigger_px = trigger_px
        self.source = source


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Triggered:
    trigger_id: str
    source: str
    trigger_px: int
    source_px: int

    def __init__(self, trigger_id: str, source: str, trigger_px: int, source_px: int) -> None:
        self.trigger_id = trigger_id
        self.source = source
        self.trigger_px = trigger_px
        self.source_px = source_px


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Trade:
    seq: int
    buy_order_id: str
    sell_order_id: str
    buy_user: UserId
    sell_user: UserId
    price: int
    qty: int
    aggressor: str  # the taker's side; the other order is the maker
    buy_position: int  # the users' positions after this trade
    sell_position: int
    at: int

    def __init__(self, seq: int, buy_order_id: str, sell_order_id: str, buy_user: UserId, sell_user: UserId, price: int,
                 qty: int, aggressor: str, buy_position: int, sell_position: int, at: int) -> None:
        self.seq = seq
        self.buy_order_id = buy_order_id
        self.sell_order_id = sell_order_id
        self.buy_user = buy_user
        self.sell_user = sell_user
        self.price = price
        self.qty = qty
        self.aggressor = aggressor
        self.buy_position = buy_position
        self.sell_position = sell_position
        self.at = at

# State ----------------------------------------------------------------------------------------------------

@mypyc_attr(acyclic=True)
class _Order:
    __slots__ = ("id", "user", "side", "kind", "px", "qty", "rem", "filled", "tif", "ro", "stp", "seq",
                 "tp", "sl", "tp_trig", "sl_trig", "legs_done")

    def __init__(self, oid: str, user: UserId, side: int, kind: str, px: int, qty: int, tif: str, ro: bool, stp: str,
                 tp: Leg | None = None, sl: Leg | None = None) -> None:
        # One statement per slot: cheaper than tuple assignments on the hot path.
        self.id = oid
        self.user = user
        self.side = side
        self.kind = kind
        self.px = px
        self.qty = qty
        self.rem = qty  # 0 for an order taken out of the book (see Engine._unrest)
        self.filled = 0
        self.tif = tif
        self.ro = ro
        self.stp = stp
        self.seq = 0
        self.tp = tp
        self.sl = sl
        self.tp_trig: _Trig | None = None  # None: not armed yet; a _Trig (live or not) once armed
        self.sl_trig: _Trig | None = None
        self.legs_done = False

    def moved(self) -> _Order:
        """A copy that re-enters the book (a modify that loses priority); its armed legs follow it."""
        o = _Order(self.id, self.user, self.side, self.kind, self.px, self.qty, self.tif, self.ro, self.stp,
                   self.tp, self.sl)
        o.rem, o.filled, o.legs_done = self.rem, self.filled, self.legs_done
        o.tp_trig, o.sl_trig = self.tp_trig, self.sl_trig
        return o


@mypyc_attr(acyclic=True)
class _Trig:
    __slots__ = ("id", "user", "side", "qty", "px", "up", "source", "limit_px", "protection_px", "ro", "stp",
                 "seq", "live", "sibling", "entry")

    def __init__(self, tid: str, user: UserId, side: int, qty: int, px: int, up: bool, source: str,
                 limit_px: int | None, protection_px: int | None, ro: bool, stp: str) -> None:
        self.id = tid
        self.user = user
        self.side = side
        self.qty = qty
        self.px = px
        self.up = up
        self.source = source
        self.limit_px = limit_px
        self.protection_px = protection_px
        self.ro = ro
        self.stp = stp
        self.seq = 0
        self.live = True
        # The other leg's id while both legs of a pair are armed, and the entry's order id for an attached leg: ids,
        # not objects, so that no order or trigger is ever part of a reference cycle (the classes are `acyclic`).
        self.sibling: str | None = None
        self.entry: str | None = None


_GONE = _Trig("", "", 0, 0, 0, True, "last", None, None, True, "cancel_incoming")
_GONE.live = False


def _leg_dict(leg: Leg | None) -> dict | None:
    return None if leg is None else {"trigger_px": leg.trigger_px, "source": leg.source,
                                     "limit_px": leg.limit_px, "protection_px": leg.protection_px}


class Engine:
    """One contract's book. `positions` seeds each user's position in lots (long > 0, short < 0).

    How the book is kept (private): each side has a dict of price levels (key -> deque of orders in time
    priority) and a heap of the level keys whose top is always a level with a live order. A cancelled order is
    not searched for in its level: it is marked dead (`rem = 0`; no resting order has a zero remainder) and
    dropped when it reaches the front, so the front of a level is always live and a level is empty exactly when
    its deque is. An order that loses priority re-enters as a copy (`_Order.moved`), never as the object that
    may still sit dead in a level. `_dirty` is set only when a trigger may be crossed (a price moved to or past
    the nearest trigger of its source, or a trigger armed already crossed): otherwise no scan runs.
    """

    def __init__(self, positions: dict[UserId, int] | None = None):
        self.positions: dict[UserId, int] = dict(positions or {})
        self.prices: dict[str, int | None] = {"last": None, "mark": None, "index": None}
        self.orders: dict[str, _Order] = {}
        self.triggers: dict[str, _Trig] = {}
        # Keys of a side's price levels sort best first: asks by price, bids by minus price. Each side keeps a
        # heap of its keys whose top is always a live level (emptied levels below the top are dropped lazily).
        self._keys: dict[int, list[int]] = {1: [], -1: []}
        self._levels: dict[int, dict[int, deque[_Order]]] = {1: {}, -1: {}}
        # Armed triggers by source, in two heaps of (trigger price, arming sequence, trigger): those that fire at or
        # above their price (nearest first) and those that fire at or below (price negated, nearest first).
        self._up: dict[str, list[tuple[int, int, _Trig]]] = {s: [] for s in SOURCES}
        self._down: dict[str, list[tuple[int, int, _Trig]]] = {s: [] for s in SOURCES}
        self._heap_pairs = [(s, self._up[s], self._down[s]) for s in SOURCES]
        self._last_up, self._last_down = self._up["last"], self._down["last"]
        self._order_seq = self._trig_seq = self._trade_seq = 0
        self._dead = 0  # orders marked dead in the middle of a level since the last compaction (at most)
        self._dirty = False
        self._ev: list = []
        self._at = 0

    # The one entry point --------------------------------------------------------------------------------
    def apply(self, command) -> list:
        ev: list = []
        self._ev = ev
        self._at = command.at
        cls = command.__class__
        if cls is Submit:
            self._submit(command)
        elif cls is Cancel:
            self._cancel(command)
        elif cls is Modify:
            self._modify(command)
        elif cls is SetPrice:
            self._set_price(command)
        elif cls is PlaceTrigger:
            self._place(command)
        elif cls is CancelAll:
            self._cancel_all(command)
        elif cls is ClosePosition:
            self._close(command)
        else:
            raise TypeError(f"not an engine command: {command!r}")
        if self._dirty:
            self._settle()
        return ev

    def best(self, side: str) -> int | None:
        """Best price of a side in ticks, None when empty."""
        s = SIDES[side]
        keys = self._keys[s]
        return -s * keys[0] if keys else None

    def level(self, side: str, price: int) -> tuple[int, int]:
        """A price level of a side (ticks): its resting quantity in lots and its number of orders, (0, 0) when
        none rests there (dead orders, `rem = 0`, not counted)."""
        s = SIDES[side]
        q = self._levels[s].get(-s * price)
        qty = count = 0
        if q is not None:
            for o in q:
                if o.rem:
                    qty += o.rem
                    count += 1
        return qty, count

    # Commands -------------------------------------------------------------------------------------------
    def _submit(self, c: Submit) -> None:
        oid = c.order_id
        qty = c.qty
        price = c.price
        tp = c.tp
        sl = c.sl
        if oid in self.orders or oid in self.triggers:
            reason = DUPLICATE_ORDER_ID
        elif qty <= 0:
            reason = INVALID_QUANTITY
        elif price is None or price <= 0:
            reason = INVALID_PRICE
        elif c.kind == "market" and c.tif != "ioc" and c.tif != "fok":
            reason = INVALID_TIME_IN_FORCE
        elif (tp is not None and not _leg_ok(tp)) or (sl is not None and not _leg_ok(sl)):
            reason = INVALID_PRICE
        else:
            self._enter(_Order(oid, c.user, SIDES[c.side], c.kind, price, qty, c.tif, c.reduce_only, c.stp, tp, sl))
            return
        self._ev.append(Rejected(oid, reason))

    def _place(self, c: PlaceTrigger) -> None:
        ev = self._ev
        if c.order_id in self.orders or c.order_id in self.triggers:
            ev.append(Rejected(c.order_id, DUPLICATE_ORDER_ID))
            return
        if c.qty <= 0:
            ev.append(Rejected(c.order_id, INVALID_QUANTITY))
            return
        px = c.limit_px if c.limit_px is not None else c.protection_px
        if px is None or px <= 0 or c.trigger_px <= 0:
            ev.append(Rejected(c.order_id, INVALID_PRICE))
            return
        side = SIDES[c.side]
        ev.append(Accepted(c.order_id, c.user, c.side, c.kind, c.trigger_px, c.qty))
        # A buy stop and a sell take-profit fire at or above their price; the other two at or below.
        up = (side == 1) == (c.kind == "stop")
        t = _Trig(c.order_id, c.user, side, c.qty, c.trigger_px, up, c.source, c.limit_px, c.protection_px,
                  c.reduce_only, c.stp)
        self._arm(t)

    def _modify(self, c: Modify) -> None:
        ev = self._ev
        o = self.orders.get(c.order_id)
        if o is None:
            ev.append(Rejected(c.order_id, UNKNOWN_ORDER))
            return
        if o.user != c.user:
            ev.append(Rejected(c.order_id, NOT_OWNER))
            return
        if not (_leg_ok(c.tp) and _leg_ok(c.sl)):
            ev.append(Rejected(c.order_id, INVALID_PRICE))
            return
        if (c.qty is not None and c.qty <= 0) or (c.price is not None and c.price <= 0):
            ev.append(Rejected(c.order_id, INVALID_QUANTITY if c.price is None or c.price > 0 else INVALID_PRICE))
            return
        px = o.px if c.price is None else c.price
        qty = o.qty if c.qty is None else c.qty
        s = o.side
        if px != o.px and o.tif == "post_only" and qty > o.filled:  # at or below the filled: nothing re-enters
            keys = self._keys[-s]
            if keys and keys[0] <= s * px:
                ev.append(Rejected(c.order_id, POST_ONLY_WOULD_TAKE))
                return
        if c.tp is not None:
            o.tp = c.tp
            self._rearm(o, True)
        if c.sl is not None:
            o.sl = c.sl
            self._rearm(o, False)
        if qty <= o.filled:
            rem = self._unrest(o)
            ev.append(Modified(o.id, px, qty, 0, False))
            ev.append(Cancelled(o.id, MODIFIED_BELOW_FILLED, rem))
            return
        if px == o.px and qty <= o.qty:
            o.rem -= o.qty - qty
            o.qty = qty
            ev.append(Modified(o.id, px, qty, o.rem, True))
            return
        self._unrest(o)
        o = o.moved()
        o.px, o.rem, o.qty = px, qty - o.filled, qty
        ev.append(Modified(o.id, px, qty, o.rem, False))
        self._enter(o, new=False)

    def _cancel(self, c: Cancel) -> None:
        o = self.orders.get(c.order_id)
        t = None if o is not None else self.triggers.get(c.order_id)
        target = o or t
        if target is None:
            self._ev.append(Rejected(c.order_id, UNKNOWN_ORDER))
        elif target.user != c.user:
            self._ev.append(Rejected(c.order_id, NOT_OWNER))
        elif o is not None:
            self._ev.append(Cancelled(o.id, CANCELLED, self._unrest(o)))
        elif t is not None:
            self._disarm(t, CANCELLED)

    def _cancel_all(self, c: CancelAll) -> None:
        side = None if c.side is None else SIDES[c.side]
        mine = sorted((o for o in self.orders.values() if o.user == c.user and (side is None or o.side == side)),
                      key=lambda o: o.seq)
        for o in mine:
            self._ev.append(Cancelled(o.id, CANCEL_ALL, self._unrest(o)))
        armed = sorted((t for t in self.triggers.values() if t.user == c.user and (side is None or t.side == side)),
                       key=lambda t: t.seq)
        for t in armed:
            self._disarm(t, CANCEL_ALL)

    def _close(self, c: ClosePosition) -> None:
        position = self.positions.get(c.user, 0)
        if position == 0:
            self._ev.append(Rejected(c.order_id, NO_POSITION))
            return
        if c.protection_px is None or c.protection_px <= 0:
            self._ev.append(Rejected(c.order_id, INVALID_PRICE))
            return
        if c.order_id in self.orders or c.order_id in self.triggers:
            self._ev.append(Rejected(c.order_id, DUPLICATE_ORDER_ID))
            return
        side = -1 if position > 0 else 1
        self._enter(_Order(c.order_id, c.user, side, "market", c.protection_px, abs(position), "ioc", True, c.stp))

    def _set_price(self, c: SetPrice) -> None:
        if c.source not in ("mark", "index"):
            raise ValueError(f"unknown price source {c.source}")
        self.prices[c.source] = c.price
        self._dirty = True

    # Matching -------------------------------------------------------------------------------------------
    def _enter(self, o: _Order, new: bool = True) -> None:
        """An order entering the book. A new one first goes through the reduce-only cut and the post-only and
        fill-or-kill checks and is accepted; then it matches, and its leftover rests or is cancelled. A modified
        order that lost its priority re-enters with `new=False`."""
        ev = self._ev
        s = o.side
        keys = self._keys[-s]
        bound = s * o.px  # the opposite side's level keys at or below this cross
        tif = o.tif
        if new:
            if o.ro:
                room = -s * self.positions.get(o.user, 0)
                if room <= 0:
                    ev.append(Rejected(o.id, REDUCE_ONLY_NOTHING))
                    return
                if o.qty > room:
                    o.qty = o.rem = room
            if tif != "gtc":
                if tif == "post_only" and keys and keys[0] <= bound:
                    ev.append(Rejected(o.id, POST_ONLY_WOULD_TAKE))
                    return
                if tif == "fok" and not self._fillable(o, bound):
                    ev.append(Rejected(o.id, FOK_NOT_FILLABLE))
                    return
            ev.append(Accepted(o.id, o.user, SIDE_NAMES[s], o.kind, o.px, o.qty))
        if keys and keys[0] <= bound and not self._match(o):
            return  # cancelled by self-trade prevention or reduce-only
        rem = o.rem
        if not rem:
            return
        if o.kind == "market":
            ev.append(Cancelled(o.id, MARKET_PROTECTION_LEFTOVER, rem))
        elif tif == "ioc" or tif == "fok":
            ev.append(Cancelled(o.id, IOC_LEFTOVER, rem))
        else:
            levels = self._levels[s]
            q = levels.get(-bound)
            if q is None:
                levels[-bound] = deque((o,))
                heappush(self._keys[s], -bound)
            else:
                q.append(o)
            self._order_seq = o.seq = self._order_seq + 1
            self.orders[o.id] = o
            ev.append(Rested(o.id, o.px, rem))

    def _match(self, o: _Order) -> bool:
        """Match the incoming order against the opposite side within its price; False if it was cancelled."""
        s = o.side
        bound = s * o.px
        keys = self._keys[-s]
        levels = self._levels[-s]
        positions = self.positions
        append = self._ev.append
        orders = self.orders
        user, oid, rem, ro = o.user, o.id, o.rem, o.ro
        legs = o.tp is not None or o.sl is not None
        mine = positions.get(user, 0)  # the incoming user's position (no maker is theirs: no self-trade)
        at = self._at
        seq = self._trade_seq
        alive = True
        last_px = None
        while keys:
            key = keys[0]
            if key > bound:
                break
            q = levels[key]
            px = s * key
            while q:
                m = q[0]
                mrem = m.rem
                if not mrem:  # cancelled in place: drop it
                    q.popleft()
                    continue
                muser = m.user
                if muser == user:
                    stp = o.stp
                    if stp != "cancel_incoming":
                        q.popleft()
                        del orders[m.id]
                        append(Cancelled(m.id, SELF_TRADE_CANCELLED, mrem))
                    if stp != "cancel_resting":
                        append(Cancelled(oid, SELF_TRADE_CANCELLED, rem))
                        alive = False
                        break
                    continue
                fill = rem if rem < mrem else mrem
                if m.ro:
                    room = s * positions.get(muser, 0)  # the maker is on side -s
                    if room <= 0:
                        q.popleft()
                        del orders[m.id]
                        append(Cancelled(m.id, REDUCE_ONLY_NOTHING, mrem))
                        continue
                    if fill > room:
                        fill = room
                if ro:
                    room = -s * mine
                    if room <= 0:
                        append(Cancelled(oid, REDUCE_ONLY_NOTHING, rem))
                        alive = False
                        break
                    if fill > room:
                        fill = room
                last_px = px
                m.rem = mrem = mrem - fill
                m.filled += fill
                rem -= fill
                seq += 1
                if s == 1:
                    positions[user] = mine = mine + fill
                    theirs = positions[muser] = positions.get(muser, 0) - fill
                    append(Trade(seq, oid, m.id, user, muser, px, fill, "buy", mine, theirs, at))
                else:
                    positions[user] = mine = mine - fill
                    theirs = positions[muser] = positions.get(muser, 0) + fill
                    append(Trade(seq, m.id, oid, muser, user, px, fill, "sell", theirs, mine, at))
                if m.tp is not None or m.sl is not None:
                    self._grow(m, fill)
                if legs:
                    self._grow(o, fill)
                if not mrem:
                    q.popleft()
                    del orders[m.id]
                if not rem:
                    break
            while q and not q[0].rem:
                q.popleft()
            if not q:
                del levels[key]
                heappop(keys)
                while keys and keys[0] not in levels:
                    heappop(keys)
            if not (alive and rem):
                break
        o.filled += o.rem - rem
        o.rem = rem
        self._trade_seq = seq
        if last_px is not None:
            self.prices["last"] = last_px
            # Scan only if the new price reached the nearest trigger on `last` (a stale heap top only costs a scan).
            up, down = self._last_up, self._last_down
            if (up and up[0][0] <= last_px) or (down and -down[0][0] >= last_px):
                self._dirty = True
        return alive

    def _fillable(self, o: _Order, bound: int) -> bool:
        """Would the whole order fill now? Walks the book as `_match` would, changing nothing."""
        s = o.side
        need = o.qty
        moved: dict[UserId, int] = {}
        positions = self.positions
        levels = self._levels[-s]
        for key in sorted(levels):
            if key > bound:
                return False
            for m in levels[key]:
                if not m.rem:
                    continue
                if m.user == o.user:
                    if o.stp == "cancel_resting":
                        continue
                    return False
                fill = need if need < m.rem else m.rem
                if m.ro:
                    room = s * (positions.get(m.user, 0) + moved.get(m.user, 0))
                    if room <= 0:
                        continue
                    if fill > room:
                        fill = room
                moved[m.user] = moved.get(m.user, 0) - s * fill
                need -= fill
                if not need:
                    return True
        return False

    def _unrest(self, o: _Order) -> int:
        """Take a resting order out of the book and return its remaining quantity. At either end of its level it
        is removed; in the middle it is only marked dead (`rem = 0`) and dropped when it reaches the front."""
        rem = o.rem
        o.rem = 0
        del self.orders[o.id]
        s = o.side
        key = -s * o.px
        levels = self._levels[s]
        q = levels[key]
        if q[0] is o:
            q.popleft()
            while q and not q[0].rem:
                q.popleft()
        elif q[-1] is o:
            q.pop()
        else:
            self._dead += 1
            if self._dead > len(self.orders) + 1024:
                self._compact()
        if not q:
            del levels[key]
            keys = self._keys[s]
            while keys and keys[0] not in levels:
                heappop(keys)
        return rem

    def _compact(self) -> None:
        """Drop every dead entry (a level whose front order never leaves would otherwise keep the orders
        cancelled behind it): after more cancels than there are resting orders, so amortised O(1) a cancel."""
        for levels in self._levels.values():
            for key, q in levels.items():
                levels[key] = deque([o for o in q if o.rem])
        self._dead = 0

    # Triggers -------------------------------------------------------------------------------------------
    def _arm_leg(self, o: _Order, take_profit: bool, qty: int) -> _Trig:
        """Arm the entry's take-profit or stop-loss for `qty` lots."""
        leg = o.tp if take_profit else o.sl
        assert leg is not None
        # The legs close the entry: a buy entry's take-profit fires at or above, its stop-loss at or below.
        t = _Trig(o.id + (":tp" if take_profit else ":sl"), o.user, -o.side, qty, leg.trigger_px,
                  (o.side == 1) == take_profit, leg.source, leg.limit_px, leg.protection_px, True, o.stp)
        t.entry = o.id
        self._arm(t)
        return t

    def _grow(self, o: _Order, fill: int) -> None:
        """The entry filled `fill` more lots: each leg arms at the first fill, sized to it, and grows after."""
        if o.legs_done:
            return
        tp = o.tp_trig
        sl = o.sl_trig
        fresh = False
        if tp is None:
            if o.tp is not None:
                o.tp_trig = tp = self._arm_leg(o, True, fill)
                fresh = True
        elif tp.live:
            tp.qty = qty = tp.qty + fill
            self._ev.append(Armed(tp.id, tp.user, SIDE_NAMES[tp.side], qty, tp.px, tp.source))
        if sl is None:
            if o.sl is not None:
                o.sl_trig = sl = self._arm_leg(o, False, fill)
                fresh = True
        elif sl.live:
            sl.qty = qty = sl.qty + fill
            self._ev.append(Armed(sl.id, sl.user, SIDE_NAMES[sl.side], qty, sl.px, sl.source))
        if fresh and tp is not None and sl is not None and tp.live and sl.live:
            tp.sibling = sl.id
            sl.sibling = tp.id

    def _rearm(self, o: _Order, take_profit: bool) -> None:
        """A modified leg: an armed one takes the new trigger (and a new arming sequence); one not armed yet
        arms now for the filled quantity if the entry has fills; a gone one stays gone."""
        if o.legs_done:
            return
        t, leg = (o.tp_trig, o.tp) if take_profit else (o.sl_trig, o.sl)
        assert leg is not None  # the leg the command gave
        if t is not None and t.live:
            t.px, t.source, t.limit_px, t.protection_px = leg.trigger_px, leg.source, leg.limit_px, leg.protection_px
            self._arm(t)
        elif t is None and o.filled:
            self._grow_one(o, take_profit)

    def _grow_one(self, o: _Order, take_profit: bool) -> None:
        t = self._arm_leg(o, take_profit, o.filled)
        other = o.sl_trig if take_profit else o.tp_trig
        if take_profit:
            o.tp_trig = t
        else:
            o.sl_trig = t
        if other is not None and other.live:
            t.sibling = other.id
            other.sibling = t.id

    def _arm(self, t: _Trig) -> None:
        self._trig_seq = seq = t.seq = self._trig_seq + 1
        self.triggers[t.id] = t
        px = t.px
        source = t.source
        price = self.prices[source]
        if t.up:
            heappush(self._up[source], (px, seq, t))
            if price is not None and price >= px:
                self._dirty = True  # already crossed: fires in this command
        else:
            heappush(self._down[source], (-px, seq, t))
            if price is not None and price <= px:
                self._dirty = True
        self._ev.append(Armed(t.id, t.user, SIDE_NAMES[t.side], t.qty, px, source))

    def _disarm(self, t: _Trig, reason: str) -> None:
        t.live = False
        del self.triggers[t.id]
        self._ev.append(Cancelled(t.id, reason, t.qty))
        if t.sibling is not None:  # the pair ends
            sibling = self.triggers.get(t.sibling)
            if sibling is not None:
                sibling.sibling = None
            t.sibling = None

    def _settle(self) -> None:
        while self._dirty:
            self._dirty = False
            for t in self._scan():
                if t.live:
                    self._fire(t)

    def _scan(self) -> list[_Trig]:
        crossed: list[tuple[int, int, _Trig]] = []
        prices = self.prices
        for source, h, down in self._heap_pairs:
            price = prices[source]
            if price is None:
                continue
            while h and h[0][0] <= price:
                px, seq, t = heappop(h)
                if t.live and t.seq == seq:
                    crossed.append((px - price, seq, t))  # minus the distance: sorts largest first
            h = down
            while h and -h[0][0] >= price:
                npx, seq, t = heappop(h)
                if t.live and t.seq == seq:
                    crossed.append((price + npx, seq, t))
        if not crossed:
            return []
        if len(crossed) > 1:
            crossed.sort(key=lambda c: (c[0], c[1]))
        return [c[2] for c in crossed]

    def _fire(self, t: _Trig) -> None:
        ev = self._ev
        t.live = False
        del self.triggers[t.id]
        price = self.prices[t.source]
        assert price is not None  # a trigger fires only on a source with a price
        ev.append(Triggered(t.id, t.source, t.px, price))
        if t.sibling is not None:
            sibling = self.triggers.get(t.sibling)
            if sibling is not None:
                self._disarm(sibling, OCO_SIBLING_TRIGGERED)
        if t.entry is not None:
            # The entry's later fills arm nothing. (An entry out of the book never comes back; an order that
            # reuses its id has other legs.)
            entry = self.orders.get(t.entry)
            if entry is not None and (entry.tp_trig is t or entry.sl_trig is t):
                entry.legs_done = True
        if t.limit_px is not None:
            o = _Order(t.id, t.user, t.side, "limit", t.limit_px, t.qty, "gtc", t.ro, t.stp)
        else:
            protection_px = t.protection_px
            assert protection_px is not None  # a trigger has a limit or a protection price
            o = _Order(t.id, t.user, t.side, "market", protection_px, t.qty, "ioc", t.ro, t.stp)
        self._enter(o)

    # Snapshot and rebuild -------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Plain data: resting orders in priority order (bids best first, then asks), armed triggers in arming
        order, positions, prices and counters. `Engine.from_snapshot` rebuilds an identical engine."""
        orders = []
        for s in (1, -1):
            for key in sorted(self._levels[s]):
                for o in self._levels[s][key]:
                    if not o.rem:
                        continue  # cancelled in place
                    orders.append({
                        "order_id": o.id, "user": o.user, "side": SIDE_NAMES[s], "kind": o.kind, "price": o.px,
                        "qty": o.qty, "remaining": o.rem, "filled": o.filled, "tif": o.tif,
                        "reduce_only": o.ro, "stp": o.stp, "seq": o.seq, "tp": _leg_dict(o.tp),
                        "sl": _leg_dict(o.sl), "tp_state": _leg_state(o.tp_trig),
                        "sl_state": _leg_state(o.sl_trig), "legs_done": o.legs_done})
        triggers = [{
            "trigger_id": t.id, "user": t.user, "side": SIDE_NAMES[t.side], "qty": t.qty, "trigger_px": t.px,
            "up": t.up, "source": t.source, "limit_px": t.limit_px, "protection_px": t.protection_px,
            "reduce_only": t.ro, "stp": t.stp, "seq": t.seq,
            "sibling": t.sibling,
        } for t in sorted(self.triggers.values(), key=lambda t: t.seq)]
        return {"orders": orders, "triggers": triggers, "positions": dict(self.positions),
                "prices": dict(self.prices),
                "counters": {"order_seq": self._order_seq, "trigger_seq": self._trig_seq,
                             "trade_seq": self._trade_seq}}

    @classmethod
    def from_snapshot(cls, snap: dict) -> Engine:
        engine = cls(snap["positions"])
        engine.prices.update(snap["prices"])
        counters = snap["counters"]
        engine._order_seq, engine._trig_seq, engine._trade_seq = (
            counters["order_seq"], counters["trigger_seq"], counters["trade_seq"])
        by_id = {}
        for t in snap["triggers"]:
            trig = _Trig(t["trigger_id"], t["user"], SIDES[t["side"]], t["qty"], t["trigger_px"], t["up"],
                         t["source"], t["limit_px"], t["protection_px"], t["reduce_only"], t["stp"])
            trig.seq = t["seq"]
            trig.sibling = t["sibling"]
            by_id[trig.id] = trig
            engine.triggers[trig.id] = trig
            if trig.up:
                heappush(engine._up[trig.source], (trig.px, trig.seq, trig))
            else:
                heappush(engine._down[trig.source], (-trig.px, trig.seq, trig))
        for d in snap["orders"]:
            s = SIDES[d["side"]]
            o = _Order(d["order_id"], d["user"], s, d["kind"], d["price"], d["qty"], d["tif"], d["reduce_only"],
                       d["stp"], _leg(d["tp"]), _leg(d["sl"]))
            o.rem, o.filled, o.seq, o.legs_done = d["remaining"], d["filled"], d["seq"], d["legs_done"]
            o.tp_trig = _leg_link(d["tp_state"], by_id)
            o.sl_trig = _leg_link(d["sl_state"], by_id)
            for leg_trig in (o.tp_trig, o.sl_trig):
                if leg_trig is not None and leg_trig.live:
                    leg_trig.entry = o.id
            key = -s * o.px
            q = engine._levels[s].get(key)
            if q is None:
                engine._levels[s][key] = q = deque()
                heappush(engine._keys[s], key)
            q.append(o)
            engine.orders[o.id] = o
        return engine


def _leg_ok(leg: Leg | None) -> bool:
    if leg is None:
        return True
    px = leg.limit_px if leg.limit_px is not None else leg.protection_px
    return px is not None and px > 0 and leg.trigger_px > 0


def _leg_state(t: _Trig | None) -> str | None:
    """None: not armed yet; the trigger id while it is armed; "gone" once it fired or was cancelled."""
    if t is None:
        return None
    return t.id if t.live else "gone"


def _leg_link(state: str | None, by_id: dict) -> _Trig | None:
    if state is None:
        return None
    return by_id[state] if state != "gone" else _GONE


def _leg(d: dict | None) -> Leg | None:
    return None if d is None else Leg(**d)
