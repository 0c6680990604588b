"""Spot prices from the venues, and the settlement price of a pair at an expiry.

Venue calls run in a thread pool with each venue's own timeout, so a venue that is down or slow
is skipped (and logged) without holding up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from ccp.clock import require_aware
from ccp.contracts.models import Contract, Pair
from ccp.errors import ApplicationError
from ccp.prices.models import ReferencePrice, ReferencePriceKind, SpotPrice, VenueSymbol
from ccp.prices.selectors import polled_venue_symbols, spot_price_ages
from ccp.prices.settlement import settlement_price
from ccp.prices.venues.base import Venue, VenueError, VenueQuote, venue
from ccp.system.models import AlertKind
from ccp.system.services import alert_raise, alert_resolve

logger = logging.getLogger(__name__)
VenueFactory = Callable[[str], Venue]


def default_venue(name: str) -> Venue:
    return venue(name, timeout_s=settings.CCP_VENUE_TIMEOUT_SECONDS)


def _ask_all(calls: list[tuple[VenueSymbol, Callable[[Venue, str], VenueQuote]]],
             venue_factory: VenueFactory) -> list[tuple[VenueSymbol, VenueQuote]]:
    def one(item):
        symbol, call = item
        try:
            return symbol, call(venue_factory(symbol.venue), symbol.symbol)
        except VenueError as error:
            logger.warning("venue %s skipped for %s: %s (%s)", symbol.venue, symbol.symbol, error, error.code)
            return symbol, None

    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
        return [(symbol, quote) for symbol, quote in pool.map(one, calls) if quote is not None]


def spot_prices_load(*, now: datetime, venue_factory: VenueFactory = default_venue) -> list[SpotPrice]:
    """Store the current price of every pair with a live contract from each enabled venue. Safe to run
    twice: a venue quote already stored (same venue, pair and time) is not stored again."""
    now = require_aware(now)
    symbols = list(polled_venue_symbols())
    stored = []
    for symbol, quote in _ask_all([(s, lambda v, name: v.ticker(name)) for s in symbols], venue_factory):
        try:
            with transaction.atomic():
                stored.append(SpotPrice.objects.create(pair=symbol.pair, source=symbol.venue, price=quote.price,
                                                       observed_at=quote.at, fetched_at=now))
        except IntegrityError:
            pass  # that quote is already stored
    _stale_prices_alert(now)
    return stored


def _stale_prices_alert(now: datetime) -> None:
    """An operator alert per pair without a fresh price from any venue (older than CCP_SPOT_STALE_AFTER,
    or none at all: every venue failing for minutes); resolved once a fresh one arrives."""
    for pair, age in spot_price_ages(now=now).items():
        key = f"prices:{pair}"
        if age is not None and age <= settings.CCP_SPOT_STALE_AFTER:
            alert_resolve(key=key, now=now)
            continue
        seen = "no venue price yet" if age is None else f"the newest venue price is {int(age.total_seconds())} s old"
        alert_raise(key=key, kind=AlertKind.PRICES_STALE, now=now, message=(
            f"No fresh spot price for {pair}: {seen} (stale after {int(settings.CCP_SPOT_STALE_AFTER.total_seconds())}"
            " s). Every venue fails or is disabled; nothing that needs a spot price moves money until one arrives."))


def spot_price_fresh(*, pair: Pair, now: datetime) -> SpotPrice | None:
    """The latest venue price of the pair if it is younger than CCP_SPOT_STALE_AFTER; None otherwise.
    Anything that moves money must use this, never an older price."""
    latest = SpotPrice.objects.filter(pair=pair, is_settlement=False).order_by("-observed_at").first()
    if latest is None or require_aware(now) - latest.observed_at > settings.CCP_SPOT_STALE_AFTER:
        return None
    return latest


def settlement_price_fix(*, pair: Pair, at: datetime, now: datetime,
                         venue_factory: VenueFactory = default_venue) -> SpotPrice | None:
    """The pair's settlement price for minute ``at``: stored once, from the venues' prices for that
    minute by the median rule. With too few venues it alerts operators and returns None; the
    caller retries on its schedule. Idempotent: a stored settlement price is returned as it is."""
    now = require_aware(now)
    existing = SpotPrice.objects.filter(pair=pair, is_settlement=True, observed_at=at).first()
    if existing:
        return existing
    symbols = list(VenueSymbol.objects.filter(pair=pair, enabled=True).order_by("venue"))
    quotes = _ask_all([(s, lambda v, name: v.price_at(name, at)) for s in symbols], venue_factory)
    prices = {symbol.venue: quote.price for symbol, quote in quotes}
    fixed = settlement_price(prices, max_deviation=settings.CCP_SETTLEMENT_MAX_DEVIATION,
                             min_venues=settings.CCP_SETTLEMENT_MIN_VENUES)
    key = f"settlement:{pair}:{at.isoformat()}"
    if fixed is None:
        alert_raise(key=key, kind=AlertKind.SETTLEMENT_PRICE, now=now, message=(
            f"No settlement price for {pair} at {at:%Y-%m-%d %H:%M} UTC: venues answered {prices or 'nothing'}, "
            f"{settings.CCP_SETTLEMENT_MIN_VENUES} agreeing within {settings.CCP_SETTLEMENT_MAX_DEVIATION:%} "
            "needed. Retrying every minute; nothing is settled until then."))
        return None
    price, used = fixed
    try:
        with transaction.atomic():
            stored = SpotPrice.objects.create(pair=pair, source=SpotPrice.SETTLEMENT_SOURCE, price=price,
                                              observed_at=at, fetched_at=now, is_settlement=True,
                                              venues={v: str(prices[v]) for v in used})
    except IntegrityError:
        stored = SpotPrice.objects.get(pair=pair, is_settlement=True, observed_at=at)
    alert_resolve(key=key, now=now)
    return stored



def reference_price_initial_set(*, contract: Contract, price: Decimal, now: datetime, commit: bool = True
                                ) -> ReferencePrice:
    """A contract's initial reference price (shown until its first clearing), on the tick grid and
    within what the contract can be worth; only once per contract."""
    if not contract.price_min <= price <= contract.price_max:
        raise ApplicationError(f"The price must lie in [{contract.price_min}, {contract.price_max}].",
                               code="price_out_of_bounds")
    if price % contract.tick_size:
        raise ApplicationError(f"The price must be on the tick grid {contract.tick_size}.", code="price_off_tick")
    if ReferencePrice.objects.filter(contract=contract, kind=ReferencePriceKind.INITIAL).exists():
        raise ApplicationError("This contract already has an initial price.", code="initial_price_exists")
    reference = ReferencePrice(contract=contract, kind=ReferencePriceKind.INITIAL, price=price,
                               at=require_aware(now))
    if commit:
        reference.save()
    return reference
