"""Positions ordered by a trigger price (liquidation, or margin call) per book and side, so a price tick finds
every crossed position without walking the others. Pure: no ORM, integer ticks.

A long is crossed when the mark falls to its price or below, a short when the mark rises to its price or
above. Each (book, side) keeps a sorted list of price and key packed in one integer (integers compare faster
than tuples), ordered most crossed first: a long's ``-ticks << 40 | key`` (highest price first), a short's
``ticks << 40 | key`` (lowest price first), ties by key ascending. The entries a mark crosses are then a prefix
of each list: one binary search per side, then a slice of exactly the crossed entries. Changing one position's
price is O(log n) (``sortedcontainers.SortedList``). A book is a contract, or any finer group of its positions
(``ccp.perps.live`` keeps one book per maintenance tier of a perpetual).

``crossed`` answers with the crossed entries as they lie in the index (two list slices: no per-entry work, so a
crash tick that crosses a quarter of a million positions is identified in milliseconds); its keys come out one
by one as the liquidation engine takes them, most crossed first: longs by price descending, then shorts by
price ascending, ties by key ascending. Keys are integers in [0, 2**40), prices non-negative integers (ticks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sortedcontainers import SortedList

LONG, SHORT = "long", "short"
_SHIFT = 40
_KEY = (1 << _SHIFT) - 1


class PriceIndex:
    def __init__(self, entries: Iterable[tuple[int, int, str, int]] = ()):
        """``entries``: (key, book, side, price ticks) to start with (a rebuild from the database)."""
        self._at: dict[int, tuple[int, str, int]] = {}
        grouped: dict[tuple[int, str], list[int]] = {}
        for key, book, side, ticks in entries:
            if key in self._at:
                raise ValueError(f"key {key} given twice")
            self._at[key] = (book, _side(side), ticks)
            grouped.setdefault((book, side), []).append(_packed(side, ticks, key))
        self._lists: dict[tuple[int, str], SortedList] = {where: SortedList(items) for where, items in grouped.items()}

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: int) -> bool:
        return key in self._at

    def price_of(self, key: int) -> int | None:
        at = self._at.get(key)
        return None if at is None else at[2]

    def books(self) -> set[int]:
        """The books holding at least one entry."""
        return {book for (book, _), entries in self._lists.items() if entries}

    def set(self, key: int, *, contract: int, side: str, ticks: int | None) -> None:
        """Put (or move) ``key`` at ``ticks`` in the book ``contract``; None removes it (a position that no price
        liquidates)."""
        self.discard(key)
        if ticks is None:
            return
        self._at[key] = (contract, _side(side), ticks)
        self._lists.setdefault((contract, side), SortedList()).add(_packed(side, ticks, key))

    def discard(self, key: int) -> None:
        at = self._at.pop(key, None)
        if at is not None:
            book, side, ticks = at
            self._lists[(book, side)].remove(_packed(side, ticks, key))

    def crossed(self, contract: int, mark: int, *, short_mark: int | None = None) -> Crossed:
        """The keys the mark ``mark`` (ticks) crossed in this book, most crossed first. ``short_mark``: the mark
        for the shorts when it differs (a mark between two ticks crosses the longs at or above the tick above it
        and the shorts at or below the tick below it)."""
        longs = self._lists.get((contract, LONG))
        shorts = self._lists.get((contract, SHORT))
        short_mark = mark if short_mark is None else short_mark
        return Crossed(longs[:longs.bisect_left((-mark + 1) << _SHIFT)] if longs else [],
                       shorts[:shorts.bisect_left((short_mark + 1) << _SHIFT)] if shorts else [])

    def nearest(self, contract: int, mark: int, count: int) -> list[tuple[int, int]]:
        """Up to ``count`` (key, distance in ticks) not yet crossed, nearest first (the admin's watch list)."""
        near = []
        longs = self._lists.get((contract, LONG))
        if longs:
            start = longs.bisect_left((-mark + 1) << _SHIFT)
            near += [(p & _KEY, mark + (p >> _SHIFT)) for p in longs.islice(start, start + count)]
        shorts = self._lists.get((contract, SHORT))
        if shorts:
            start = shorts.bisect_left((mark + 1) << _SHIFT)
            near += [(p & _KEY, (p >> _SHIFT) - mark) for p in shorts.islice(start, start + count)]
        return sorted(near, key=lambda item: (item[1], item[0]))[:count]


class Crossed(Sequence[int]):
    """The keys a tick crossed: the crossed longs then shorts, each most crossed first (two slices)."""

    def __init__(self, longs: list[int], shorts: list[int]):
        self._longs, self._shorts = longs, shorts

    def __len__(self) -> int:
        return len(self._longs) + len(self._shorts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        longs = len(self._longs)
        return (self._longs[i] if i < longs else self._shorts[i - longs]) & _KEY

    def __iter__(self) -> Iterator[int]:
        for packed in self._longs:
            yield packed & _KEY
        for packed in self._shorts:
            yield packed & _KEY

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def entries(self, side: str) -> Iterator[tuple[int, int]]:
        """(price ticks, key) of one side's crossed entries, most crossed first."""
        if _side(side) == LONG:
            return ((-(p >> _SHIFT), p & _KEY) for p in self._longs)
        return ((p >> _SHIFT, p & _KEY) for p in self._shorts)

    def side_count(self, side: str) -> int:
        return len(self._longs if _side(side) == LONG else self._shorts)


def _packed(side: str, ticks: int, key: int) -> int:
    if ticks < 0 or not 0 <= key <= _KEY:
        raise ValueError(f"ticks must be >= 0 and keys in [0, 2**{_SHIFT}), got {ticks}, {key}")
    return (-ticks if side == LONG else ticks) << _SHIFT | key


def _side(side: str) -> str:
    if side not in (LONG, SHORT):
        raise ValueError(f"side must be {LONG!r} or {SHORT!r}, got {side!r}")
    return side
