"""Order states and the one table of allowed transitions."""

from django.db import models


class OrderState(models.TextChoices):
    RECEIVED = "received"
    UNTRIGGERED = "untriggered"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = OrderState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.ACCEPTED, S.UNTRIGGERED, S.REJECTED, S.CANCELLED}),
    # A stop or take-profit order (or an entry's attached leg) armed on the continuous book: it enters the
    # book as a limit or market order when its trigger fires.
    S.UNTRIGGERED: frozenset({S.ACCEPTED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.REJECTED: frozenset(),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
OPEN_STATES = frozenset({S.RECEIVED, S.UNTRIGGERED, S.ACCEPTED, S.PARTIALLY_FILLED})
# Validated orders waiting to trade: the public book.
BOOK_STATES = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})
# Orders that hold collateral: those on the book and the armed stop and take-profit orders.
HOLDING_STATES = BOOK_STATES | {S.UNTRIGGERED}
TERMINAL_STATES = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)


def transition_allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS[current]
