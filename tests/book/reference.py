"""A deliberately simple reference matcher: the engine's rules (ccp/book/engine.py docstring) with lists and loops.

No price levels, no heaps, no links between objects: the book is one list of resting orders, the best maker
is found by sorting it every time, triggers are one list scanned in full, a leg's sibling is looked up by id,
and fill-or-kill runs the order on a deep copy of the whole state. Slow and obviously correct, so that the
property test can hold the fast engine to it.
"""

from __future__ import annotations

import copy

from ccp.book import engine as E


class RefOrder:
    def __init__(self, oid, user, side, kind, px, qty, tif, ro, stp, tp=None, sl=None):
        self.id, self.user, self.side, self.kind, self.px = oid, user, side, kind, px
        self.qty, self.rem, self.filled = qty, qty, 0
        self.tif, self.ro, self.stp, self.tp, self.sl = tif, ro, stp, tp, sl
        self.seq = 0


class RefTrigger:
    def __init__(self, tid, user, side, qty, px, up, source, limit_px, protection_px, ro, stp, parent=None):
        self.id, self.user, self.side, self.qty, self.px, self.up = tid, user, side, qty, px, up
        self.source, self.limit_px, self.protection_px, self.ro, self.stp = source, limit_px, protection_px, ro, stp
        self.parent = parent  # the entry's id for an attached leg
        self.seq = 0

    def crossed(self, price):
        return price is not None and (price >= self.px if self.up else price <= self.px)


class Reference:
    def __init__(self, positions=None):
        self.positions = dict(positions or {})
        self.prices = {"last": None, "mark": None, "index": None}
        self.book: list[RefOrder] = []
        self.triggers: list[RefTrigger] = []
        self.leg_state: dict[tuple[str, str], str] = {}  # (entry id, "tp"|"sl") -> "armed" | "gone"
        self.legs_done: set[str] = set()
        self.seq = {"order": 0, "trigger": 0, "trade": 0}
        self.ev: list = []
        self.at = 0

    def apply(self, c):
        self.ev = []
        self.at = c.at
        getattr(self, "do_" + type(c).__name__)(c)
        while True:  # fire crossed triggers in batches until none is crossed
            batch = [t for t in self.triggers if t.crossed(self.prices[t.source])]
            if not batch:
                break
            batch.sort(key=lambda t: (-abs(self.prices[t.source] - t.px), t.seq))
            for t in batch:
                if t in self.triggers:
                    self.fire(t)
        return self.ev

    # helpers
    def find(self, oid):
        return next((o for o in self.book if o.id == oid), None)

    def find_trigger(self, tid):
        return next((t for t in self.triggers if t.id == tid), None)

    def taken(self, oid):
        return self.find(oid) is not None or self.find_trigger(oid) is not None

    def pos(self, user):
        return self.positions.get(user, 0)

    def makers(self, side):
        """Resting orders of the opposite side, best first."""
        opposite = [o for o in self.book if o.side == -side]
        return sorted(opposite, key=lambda o: (-o.side * o.px, o.seq))

    def crosses(self, o):
        makers = self.makers(o.side)
        return bool(makers) and (makers[0].px <= o.px if o.side == 1 else makers[0].px >= o.px)

    # commands
    def do_Submit(self, c):
        if self.taken(c.order_id):
            return self.ev.append(E.Rejected(c.order_id, E.DUPLICATE_ORDER_ID))
        if c.qty <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_QUANTITY))
        if c.price is None or c.price <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        if c.kind == "market" and c.tif not in ("ioc", "fok"):
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_TIME_IN_FORCE))
        if not (leg_ok(c.tp) and leg_ok(c.sl)):
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        side = 1 if c.side == "buy" else -1
        self.enter(RefOrder(c.order_id, c.user, side, c.kind, c.price, c.qty, c.tif, c.reduce_only, c.stp,
                            c.tp, c.sl))

    def do_PlaceTrigger(self, c):
        if self.taken(c.order_id):
            return self.ev.append(E.Rejected(c.order_id, E.DUPLICATE_ORDER_ID))
        if c.qty <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_QUANTITY))
        px = c.limit_px if c.limit_px is not None else c.protection_px
        if px is None or px <= 0 or c.trigger_px <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        self.ev.append(E.Accepted(c.order_id, c.user, c.side, c.kind, c.trigger_px, c.qty))
        side = 1 if c.side == "buy" else -1
        if c.kind == "stop":
            up = side == 1
        else:
            up = side == -1
        self.arm(RefTrigger(c.order_id, c.user, side, c.qty, c.trigger_px, up, c.source, c.limit_px,
                            c.protection_px, c.reduce_only, c.stp))

    def do_Modify(self, c):
        o = self.find(c.order_id)
        if o is None:
            return self.ev.append(E.Rejected(c.order_id, E.UNKNOWN_ORDER))
        if o.user != c.user:
            return self.ev.append(E.Rejected(c.order_id, E.NOT_OWNER))
        if not (leg_ok(c.tp) and leg_ok(c.sl)):
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        if c.price is not None and c.price <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        if c.qty is not None and c.qty <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_QUANTITY))
        px = o.px if c.price is None else c.price
        qty = o.qty if c.qty is None else c.qty
        if px != o.px and o.tif == "post_only" and qty > o.filled:  # the README: at or below filled cancels
            moved = copy.copy(o)
            moved.px = px
            if self.crosses(moved):
                return self.ev.append(E.Rejected(c.order_id, E.POST_ONLY_WOULD_TAKE))
        if c.tp is not None:
            o.tp = c.tp
            self.rearm(o, "tp")
        if c.sl is not None:
            o.sl = c.sl
            self.rearm(o, "sl")
        if qty <= o.filled:
            self.book.remove(o)
            self.ev.append(E.Modified(o.id, px, qty, 0, False))
            self.ev.append(E.Cancelled(o.id, E.MODIFIED_BELOW_FILLED, o.rem))
            return
        if px == o.px and qty <= o.qty:
            o.rem = qty - o.filled
            o.qty = qty
            self.ev.append(E.Modified(o.id, px, qty, o.rem, True))
            return
        self.book.remove(o)
        o.px, o.qty, o.rem = px, qty, qty - o.filled
        self.ev.append(E.Modified(o.id, px, qty, o.rem, False))
        self.match_and_rest(o)

    def do_Cancel(self, c):
        target = self.find(c.order_id) or self.find_trigger(c.order_id)
        if target is None:
            return self.ev.append(E.Rejected(c.order_id, E.UNKNOWN_ORDER))
        if target.user != c.user:
            return self.ev.append(E.Rejected(c.order_id, E.NOT_OWNER))
        if isinstance(target, RefOrder):
            self.book.remove(target)
            self.ev.append(E.Cancelled(target.id, E.CANCELLED, target.rem))
        else:
            self.disarm(target, E.CANCELLED)

    def do_CancelAll(self, c):
        def mine(x):
            return x.user == c.user and (c.side is None or x.side == (1 if c.side == "buy" else -1))
        for o in sorted([o for o in self.book if mine(o)], key=lambda o: o.seq):
            self.book.remove(o)
            self.ev.append(E.Cancelled(o.id, E.CANCEL_ALL, o.rem))
        for t in sorted([t for t in self.triggers if mine(t)], key=lambda t: t.seq):
            self.disarm(t, E.CANCEL_ALL)

    def do_ClosePosition(self, c):
        p = self.pos(c.user)
        if p == 0:
            return self.ev.append(E.Rejected(c.order_id, E.NO_POSITION))
        if c.protection_px is None or c.protection_px <= 0:
            return self.ev.append(E.Rejected(c.order_id, E.INVALID_PRICE))
        if self.taken(c.order_id):
            return self.ev.append(E.Rejected(c.order_id, E.DUPLICATE_ORDER_ID))
        side = -1 if p > 0 else 1
        self.enter(RefOrder(c.order_id, c.user, side, "market", c.protection_px, abs(p), "ioc", True, c.stp))

    def do_SetPrice(self, c):
        self.prices[c.source] = c.price

    # orders
    def room(self, user, side):
        """How much an order of this side still reduces the user's position."""
        return max(0, -side * self.pos(user))

    def enter(self, o):
        if o.ro:
            if self.room(o.user, o.side) == 0:
                return self.ev.append(E.Rejected(o.id, E.REDUCE_ONLY_NOTHING))
            o.qty = o.rem = min(o.qty, self.room(o.user, o.side))
        if o.tif == "post_only" and self.crosses(o):
            return self.ev.append(E.Rejected(o.id, E.POST_ONLY_WOULD_TAKE))
        if o.tif == "fok":
            trial = copy.deepcopy(self)
            trial_order = copy.deepcopy(o)
            trial.match(trial_order)
            if trial_order.rem:
                return self.ev.append(E.Rejected(o.id, E.FOK_NOT_FILLABLE))
        self.ev.append(E.Accepted(o.id, o.user, "buy" if o.side == 1 else "sell", o.kind, o.px, o.qty))
        self.match_and_rest(o)

    def match_and_rest(self, o):
        if not self.match(o) or o.rem == 0:
            return
        if o.kind == "market":
            self.ev.append(E.Cancelled(o.id, E.MARKET_PROTECTION_LEFTOVER, o.rem))
        elif o.tif in ("ioc", "fok"):
            self.ev.append(E.Cancelled(o.id, E.IOC_LEFTOVER, o.rem))
        else:
            self.seq["order"] += 1
            o.seq = self.seq["order"]
            self.book.append(o)
            self.ev.append(E.Rested(o.id, o.px, o.rem))

    def match(self, o):
        """Take from the book while it crosses; False when the incoming order was cancelled."""
        while o.rem > 0 and self.crosses(o):
            m = self.makers(o.side)[0]
            if m.user == o.user:
                if o.stp in ("cancel_resting", "cancel_both"):
                    self.book.remove(m)
                    self.ev.append(E.Cancelled(m.id, E.SELF_TRADE_CANCELLED, m.rem))
                if o.stp in ("cancel_incoming", "cancel_both"):
                    self.ev.append(E.Cancelled(o.id, E.SELF_TRADE_CANCELLED, o.rem))
                    return False
                continue
            fill = min(o.rem, m.rem)
            if m.ro:
                if self.room(m.user, m.side) == 0:
                    self.book.remove(m)
                    self.ev.append(E.Cancelled(m.id, E.REDUCE_ONLY_NOTHING, m.rem))
                    continue
                fill = min(fill, self.room(m.user, m.side))
            if o.ro:
                if self.room(o.user, o.side) == 0:
                    self.ev.append(E.Cancelled(o.id, E.REDUCE_ONLY_NOTHING, o.rem))
                    return False
                fill = min(fill, self.room(o.user, o.side))
            buy, sell = (o, m) if o.side == 1 else (m, o)
            self.positions[buy.user] = self.pos(buy.user) + fill
            self.positions[sell.user] = self.pos(sell.user) - fill
            m.rem -= fill
            m.filled += fill
            o.rem -= fill
            o.filled += fill
            self.seq["trade"] += 1
            self.ev.append(E.Trade(self.seq["trade"], buy.id, sell.id, buy.user, sell.user, m.px, fill,
                                   "buy" if o.side == 1 else "sell", self.pos(buy.user), self.pos(sell.user),
                                   self.at))
            self.prices["last"] = m.px
            self.grow(m, fill)
            self.grow(o, fill)
            if m.rem == 0:
                self.book.remove(m)
        return True

    # triggers
    def leg_trigger(self, o, which, qty):
        leg = o.tp if which == "tp" else o.sl
        up = (o.side == 1) == (which == "tp")
        return RefTrigger(f"{o.id}:{which}", o.user, -o.side, qty, leg.trigger_px, up, leg.source, leg.limit_px,
                          leg.protection_px, True, o.stp, parent=o.id)

    def grow(self, o, fill):
        if o.id in self.legs_done:
            return
        for which in ("tp", "sl"):
            spec = o.tp if which == "tp" else o.sl
            state = self.leg_state.get((o.id, which))
            if state is None and spec is not None:
                self.leg_state[(o.id, which)] = "armed"
                self.arm(self.leg_trigger(o, which, fill))
            elif state == "armed":
                t = self.find_trigger(f"{o.id}:{which}")
                t.qty += fill
                self.ev.append(E.Armed(t.id, t.user, "buy" if t.side == 1 else "sell", t.qty, t.px, t.source))

    def rearm(self, o, which):
        if o.id in self.legs_done:
            return
        leg = o.tp if which == "tp" else o.sl
        state = self.leg_state.get((o.id, which))
        if state == "armed":
            t = self.find_trigger(f"{o.id}:{which}")
            self.triggers.remove(t)
            t.px, t.source, t.limit_px, t.protection_px = leg.trigger_px, leg.source, leg.limit_px, leg.protection_px
            self.arm(t)
        elif state is None and o.filled:
            self.leg_state[(o.id, which)] = "armed"
            self.arm(self.leg_trigger(o, which, o.filled))

    def arm(self, t):
        self.seq["trigger"] += 1
        t.seq = self.seq["trigger"]
        self.triggers.append(t)
        self.ev.append(E.Armed(t.id, t.user, "buy" if t.side == 1 else "sell", t.qty, t.px, t.source))

    def disarm(self, t, reason):
        self.triggers.remove(t)
        if t.parent is not None:
            self.leg_state[(t.parent, t.id.rsplit(":", 1)[1])] = "gone"
        self.ev.append(E.Cancelled(t.id, reason, t.qty))

    def fire(self, t):
        self.triggers.remove(t)
        self.ev.append(E.Triggered(t.id, t.source, t.px, self.prices[t.source]))
        if t.parent is not None:
            self.leg_state[(t.parent, t.id.rsplit(":", 1)[1])] = "gone"
            other = f"{t.parent}:{'sl' if t.id.endswith(':tp') else 'tp'}"
            sibling = self.find_trigger(other)
            if sibling is not None:
                self.disarm(sibling, E.OCO_SIBLING_TRIGGERED)
            self.legs_done.add(t.parent)
        if t.limit_px is not None:
            o = RefOrder(t.id, t.user, t.side, "limit", t.limit_px, t.qty, "gtc", t.ro, t.stp)
        else:
            o = RefOrder(t.id, t.user, t.side, "market", t.protection_px, t.qty, "ioc", t.ro, t.stp)
        self.enter(o)


def leg_ok(leg):
    if leg is None:
        return True
    px = leg.limit_px if leg.limit_px is not None else leg.protection_px
    return px is not None and px > 0 and leg.trigger_px > 0
