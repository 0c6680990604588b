"""Price venues (Gemini, Coinbase, Binance) behind one interface; see base.py. No Django here."""

from .base import VENUES, Venue, VenueError, VenueQuote, venue

__all__ = ["VENUES", "Venue", "VenueError", "VenueQuote", "venue"]
