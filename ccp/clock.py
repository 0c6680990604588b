"""Time helpers: everything is timezone-aware UTC, and services take ``now`` from their caller."""

from datetime import UTC, date, datetime, time, timedelta

EXPIRY_TIME = time(12, 0, tzinfo=UTC)
# Contracts stop trading 12 hours before expiry: at 00:00 UTC on the expiry day.
TRADING_HALT_BEFORE_EXPIRY = timedelta(hours=12)


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: ccp works in aware UTC only")
    return value.astimezone(UTC)


def expiry_at(expiry_date: date) -> datetime:
    """Every contract expires at 12:00 UTC on its expiry date."""
    return datetime.combine(expiry_date, EXPIRY_TIME)


def trading_ends_at(expiry_date: date) -> datetime:
    return expiry_at(expiry_date) - TRADING_HALT_BEFORE_EXPIRY


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with "Z", as the API's DateTimeFields render it (TIME_ZONE = "UTC")."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
