"""Order states and the one table of allowed transitions."""

from django.db import models


class OrderState(models.TextChoices):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = OrderState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.ACCEPTED, S.REJECTED, S.CANCELLED}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.REJECTED: frozenset(),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
OPEN_STATES = frozenset({S.RECEIVED, S.ACCEPTED, S.PARTIALLY_FILLED})
# Validated orders waiting to trade: the public book.
BOOK_STATES = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})
TERMINAL_STATES = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)


def transition_allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS[current]
