"""Positions ordered by a trigger price (liquidation, or margin call) per contract and side, so a price
tick finds every crossed position without walking the others. Pure: no ORM, integer ticks.

A long is crossed when the mark falls to its price or below, a short when the mark rises to its price or
above. Each (contract, side) keeps a sorted list of (price, key): a tick is one binary search per side,
then a slice of exactly the crossed entries. Changing one position's price is O(log n)
(``sortedcontainers.SortedList``). The worker that owns a contract keeps the index in memory and rebuilds
it from the database (the journal) when it starts.

``crossed`` lists the most crossed first: longs by price descending, shorts ascending (ties by key).
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedList

LONG, SHORT = "long", "short"


class PriceIndex:
    def __init__(self, entries: Iterable[tuple[int, int, str, int]] = ()):
        """``entries``: (key, contract, side, price ticks) to start with (a rebuild from the database)."""
        self._at: dict[int, tuple[int, str, int]] = {}
        grouped: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for key, contract, side, ticks in entries:
            if key in self._at:
                raise ValueError(f"key {key} given twice")
            self._at[key] = (contract, _side(side), ticks)
            grouped.setdefault((contract, side), []).append((ticks, key))
        self._lists: dict[tuple[int, str], SortedList] = {where: SortedList(items) for where, items in grouped.items()}

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: int) -> bool:
        return key in self._at

    def price_of(self, key: int) -> int | None:
        at = self._at.get(key)
        return None if at is None else at[2]

    def set(self, key: int, *, contract: int, side: str, ticks: int | None) -> None:
        """Put (or move) ``key`` at ``ticks``; None removes it (a position that no price liquidates)."""
        self.discard(key)
        if ticks is None:
            return
        self._at[key] = (contract, _side(side), ticks)
        self._lists.setdefault((contract, side), SortedList()).add((ticks, key))

    def discard(self, key: int) -> None:
        at = self._at.pop(key, None)
        if at is not None:
            contract, side, ticks = at
            self._lists[(contract, side)].remove((ticks, key))

    def crossed(self, contract: int, mark: int) -> list[int]:
        """The keys the mark ``mark`` (ticks) crossed on this contract, most crossed first."""
        found = []
        longs = self._lists.get((contract, LONG))
        if longs:
            found.extend(key for _, key in longs.islice(longs.bisect_left((mark,)), reverse=True))
        shorts = self._lists.get((contract, SHORT))
        if shorts:
            found.extend(key for _, key in shorts.islice(0, shorts.bisect_left((mark + 1,))))
        return found

    def nearest(self, contract: int, mark: int, count: int) -> list[tuple[int, int]]:
        """Up to ``count`` (key, distance in ticks) not yet crossed, nearest first (the admin's watch list)."""
        near = []
        longs = self._lists.get((contract, LONG))
        if longs:
            start = longs.bisect_left((mark,))
            near.extend((key, mark - ticks) for ticks, key in longs.islice(max(0, start - count), start))
        shorts = self._lists.get((contract, SHORT))
        if shorts:
            start = shorts.bisect_left((mark + 1,))
            near.extend((key, ticks - mark) for ticks, key in shorts.islice(start, start + count))
        return sorted(near, key=lambda item: (item[1], item[0]))[:count]


def _side(side: str) -> str:
    if side not in (LONG, SHORT):
        raise ValueError(f"side must be {LONG!r} or {SHORT!r}, got {side!r}")
    return side
