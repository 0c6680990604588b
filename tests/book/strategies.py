"""Random command streams for the book engine: few users and a narrow price band, so that orders cross,
self-trades, reduce-only cuts, modifies and triggers (on every price source) happen often."""

from __future__ import annotations

from hypothesis import strategies as st

from ccp.book.engine import Cancel, CancelAll, ClosePosition, Leg, Modify, PlaceTrigger, SetPrice, Submit

USERS = ("u1", "u2", "u3", "u4")
PX = st.integers(96, 104)
QTY = st.integers(1, 6)
STP = st.sampled_from(("cancel_resting", "cancel_incoming", "cancel_both"))
SOURCE = st.sampled_from(("last", "last", "mark", "index"))


@st.composite
def legs(draw):
    if draw(st.booleans()):
        return None
    trigger = draw(PX)
    if draw(st.booleans()):
        return Leg(trigger, draw(SOURCE), limit_px=draw(PX))
    return Leg(trigger, draw(SOURCE), protection_px=draw(st.sampled_from((90, 95, 100, 105, 110))))


def _submit(n, user, side, qty, kind, price, tif, ro, stp, tp, sl):
    if kind == "market" and tif in ("gtc", "post_only"):
        tif = "ioc"
    return Submit(f"o{n}", user, side, qty, kind, price, tif, ro, stp, tp, sl)


def commands(draw, size):
    """A list of commands; targets of modify and cancel are drawn among the ids issued so far (legs too)."""
    out = []
    ids: list[tuple[str, str]] = []
    for n in range(size):
        kind = draw(st.sampled_from(
            ("limit", "limit", "limit", "limit", "market", "trigger", "modify", "modify", "cancel", "cancel_all",
             "close", "price")))
        user = draw(st.sampled_from(USERS))
        side = draw(st.sampled_from(("buy", "sell")))
        if kind in ("limit", "market"):
            c = _submit(n, user, side, draw(QTY), kind, draw(PX) if kind == "limit" else
                        draw(st.sampled_from((90, 98, 100, 102, 110))),
                        draw(st.sampled_from(("gtc", "gtc", "ioc", "fok", "post_only"))),
                        draw(st.integers(0, 4)) == 0, draw(STP),
                        draw(legs()), draw(legs()))
            ids += [(c.order_id, user), (f"{c.order_id}:tp", user), (f"{c.order_id}:sl", user)]
        elif kind == "trigger":
            limit = draw(st.booleans())
            c = PlaceTrigger(f"o{n}", user, side, draw(QTY), draw(st.sampled_from(("stop", "take_profit"))), draw(PX),
                             draw(SOURCE), draw(PX) if limit else None,
                             None if limit else draw(st.sampled_from((90, 100, 110))), draw(st.booleans()),
                             draw(STP))
            ids.append((c.order_id, user))
        elif kind in ("modify", "cancel") and ids:
            # Mostly the latest orders (still resting, often part filled), sometimes any of them.
            pick = draw(st.integers(1, min(len(ids), 9))) if draw(st.integers(0, 3)) else draw(st.integers(1, len(ids)))
            oid, owner = ids[-pick]
            if draw(st.integers(0, 9)) == 0:
                owner = user  # sometimes someone else's order
            if kind == "cancel":
                c = Cancel(oid, owner)
            else:
                c = Modify(oid, owner, draw(st.none() | PX), draw(st.none() | st.integers(0, 8)),
                           draw(legs()), draw(legs()))
        elif kind == "cancel_all":
            c = CancelAll(user, draw(st.sampled_from((None, "buy", "sell"))))
        elif kind == "close":
            c = ClosePosition(f"o{n}", user, draw(st.sampled_from((90, 98, 102, 110))),
                              draw(STP))
        elif kind == "price":
            c = SetPrice(draw(st.sampled_from(("mark", "index"))), draw(PX))
        else:
            continue
        c.at = n
        out.append(c)
    return out


@st.composite
def streams(draw, max_size=60):
    return commands(draw, draw(st.integers(1, max_size)))


@st.composite
def positions(draw):
    return {u: draw(st.integers(-5, 5)) for u in USERS[:2]} | {USERS[2]: 0}
