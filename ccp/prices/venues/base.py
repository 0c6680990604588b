"""Price venues behind one interface: the current ticker, and the price at a past minute.

"The price at minute T" is the close of the venue's 1-minute candle that ends at T (the candle opening
at T-1min): for 12:00:00 UTC, the 11:59 candle. Pure module, no Django: money is Decimal, times aware UTC.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

import requests

VENUES = ("gemini", "coinbase", "binance")

VenueErrorCode = Literal["unavailable", "malformed", "not_found"]


@dataclass(frozen=True)
class VenueQuote:
    venue: str  # "gemini" | "coinbase" | "binance"
    symbol: str  # the venue symbol asked for (ccxt unified, e.g. "BTC/USD", "BTC/USDT")
    price: Decimal
    at: datetime  # aware UTC: the ticker's timestamp, or the minute asked for


class VenueError(Exception):
    """A venue gave no usable price. ``code``: ``unavailable`` (network error, timeout, HTTP 5xx/429 or another
    refusal: try again later), ``malformed`` (unparseable, missing fields, non-positive price), ``not_found``
    (no candle for that minute, unknown symbol)."""

    def __init__(self, code: VenueErrorCode, message: str = "") -> None:
        if code not in get_args(VenueErrorCode):
            raise ValueError(f"unknown venue error code {code!r}")
        super().__init__(f"{code}: {message}" if message else code)
        self.code: VenueErrorCode = code
        self.message = message


class Venue(ABC):
    """One venue's public market data. An instance holds one HTTP client: use it from one thread at a time."""

    name: str

    @abstractmethod
    def ticker(self, symbol: str) -> VenueQuote:
        """The venue's last traded price now, stamped with the venue's own time for it."""

    @abstractmethod
    def price_at(self, symbol: str, minute: datetime) -> VenueQuote:
        """The close of the 1-minute candle ending at ``minute`` (aware UTC, a whole minute).

        Ask only for minutes that have passed: the candle of a minute still running has no final close."""


def venue(name: str, *, timeout_s: float = 5.0, session: requests.Session | None = None) -> Venue:
    """The venue called ``name``; ``session`` carries its HTTP (tests mount a replaying transport on it)."""
    from . import binance, coinbase, gemini  # here, not at the top: the venue modules import this one

    classes: dict[str, Callable[..., Venue]] = {"gemini": gemini.Gemini, "coinbase": coinbase.Coinbase,
                                                "binance": binance.Binance}
    if name not in classes:
        raise ValueError(f"unknown venue {name!r}: one of {', '.join(VENUES)}")
    return classes[name](timeout_s=timeout_s, session=session)
