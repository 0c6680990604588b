"""The client's stream state, fed messages by hand: a local book follows a snapshot and its level
changes, drops what the snapshot already holds, and on a sequence gap re-syncs from the REST book;
the trade stream fills a gap with the missing trades, in order, and drops repeats; the private stream
re-reads open orders and the fills it did not see after a reconnect."""

from decimal import Decimal as D

import pytest
from ccp_client import BookStream, GapError, LocalBook, PrivateStream, Seen, Sequence, TradeStream


def snapshot(sequence, bids=(), asks=()):
    def level(price, quantity):
        return {"price": price, "quantity": quantity, "orders": 1}

    return {"type": "book.snapshot", "contract": "BTC-F", "sequence": sequence,
            "bids": [level(*b) for b in bids], "asks": [level(*a) for a in asks]}


def change(sequence, side, price, quantity, orders=1):
    return {"type": "book.level", "sequence": sequence, "side": side, "price": price, "quantity": quantity,
            "orders": orders}


def test_sequence_says_next_old_or_gap():
    seq = Sequence(10)
    assert [seq.see(n) for n in (9, 10, 11, 12)] == [Seen.OLD, Seen.OLD, Seen.NEXT, Seen.GAP]
    assert Sequence().see(500) is Seen.NEXT  # nothing seen yet: the first number starts it


def test_local_book_applies_changes_in_order_and_drops_those_in_its_snapshot():
    book = LocalBook()
    book.load(snapshot(5, bids=[("100", "2")], asks=[("110", "1")]))
    assert book.apply(change(5, "buy", "100", "9")) is False  # already in the snapshot
    assert book.apply(change(6, "buy", "101", "3")) is True
    assert book.apply(change(7, "sell", "110", "0")) is True  # a level emptied goes away
    assert (book.best_bid(), book.best_ask(), book.sequence.last) == (D(101), None, 7)
    assert book.levels()["bids"] == [{"price": D(101), "quantity": D(3), "orders": 1},
                                     {"price": D(100), "quantity": D(2), "orders": 1}]


def test_local_book_refuses_a_change_after_a_gap_and_stays_out_of_sync():
    book = LocalBook()
    book.load(snapshot(5, bids=[("100", "2")]))
    with pytest.raises(GapError) as gap:
        book.apply(change(7, "buy", "101", "3"))
    assert (gap.value.expected, gap.value.got) == (6, 7)
    assert book.best_bid() == D(100) and not book.synced
    with pytest.raises(GapError):  # nothing applies until a snapshot is loaded again
        book.apply(change(8, "buy", "102", "1"))


class RestBook:
    """The REST answers a stream re-syncs from (as GET /contracts/<symbol>/book and /trades give them)."""

    def __init__(self, books=(), trades=()):
        self.books, self.trades = list(books), list(trades)
        self.asked = []

    def book(self, symbol):
        self.asked.append(("book", symbol))
        return self.books.pop(0)

    def trades_after(self, symbol, sequence):
        self.asked.append(("trades_after", symbol, sequence))
        return [t for t in self.trades if t["sequence"] > sequence]


class Scripted(BookStream):
    """A book stream whose connection delivers ``script`` (a test's way to lose a message)."""

    def __init__(self, rest, script):
        super().__init__(rest, "BTC-F")
        self.script = script

    def messages(self):
        yield from self.script


def test_book_stream_resyncs_from_rest_on_a_gap_and_goes_on_from_there():
    rest = RestBook(books=[snapshot(8, bids=[("101", "3"), ("100", "2")], asks=[("105", "1")])])
    stream = Scripted(rest, [snapshot(5, bids=[("100", "2")]), change(6, "buy", "101", "3"),
                             # 7 is lost
                             change(8, "sell", "105", "1"),  # the gap: the REST book (at 8) holds it
                             change(8, "sell", "105", "1"),  # a repeat: dropped
                             change(9, "buy", "100", "0")])
    events = list(stream)
    assert [e["type"] for e in events] == ["book.snapshot", "book.level", "resync", "book.level"]
    assert events[2] == {"type": "resync", "reason": "gap: expected 7, got 8", "sequence": 8}
    assert rest.asked == [("book", "BTC-F")] and stream.resyncs == 1
    assert stream.book.levels() == {"sequence": 9, "bids": [{"price": D(101), "quantity": D(3), "orders": 1}],
                                    "asks": [{"price": D(105), "quantity": D(1), "orders": 1}]}


def test_book_stream_without_a_gap_never_reads_rest():
    rest = RestBook()
    list(Scripted(rest, [snapshot(1), change(2, "buy", "100", "1"), {"type": "trade", "price": D(100)},
                         change(3, "buy", "100", "0")]))
    assert rest.asked == []


def trade(sequence, price="100"):
    return {"type": "trade", "sequence": sequence, "price": D(price), "quantity": D(1)}


def test_trade_stream_fills_a_gap_from_rest_in_order_and_drops_repeats():
    rest = RestBook(trades=[trade(n) for n in range(1, 8)])
    stream = TradeStream(rest, "BTC-F")
    got = [t for message in (trade(1), trade(2), trade(5), trade(5), trade(4), trade(6))
           for t in stream.accept(message)]
    assert [t["sequence"] for t in got] == [1, 2, 3, 4, 5, 6]
    assert [t.get("resynced", False) for t in got] == [False, False, True, True, False, False]
    assert rest.asked == [("trades_after", "BTC-F", 2)] and stream.resyncs == 1


class RestAccount:
    """A trader's REST answers after a reconnect: its open orders and its fills since a time."""

    def __init__(self, fills, orders):
        self._fills, self._orders, self.since = fills, orders, []

    def fills(self, since):
        self.since.append(since)
        return iter(self._fills)

    def open_orders(self):
        return self._orders


class ScriptedPrivate(PrivateStream):
    def __init__(self, rest, script):
        super().__init__(rest)
        self.script = script

    def messages(self):
        for message in self.script:
            if message == "reconnect":
                self.connections += 1
                self.on_lost()
                yield from self.on_connect()
            else:
                yield message


def test_private_stream_rereads_orders_and_only_the_fills_it_missed_after_a_reconnect():
    seen_live = {"trade_id": 5, "order_id": 1, "price": D(100), "quantity": D(1)}
    missed = {"trade_id": 6, "order_id": 1, "price": D(101), "quantity": D(1)}
    rest = RestAccount(fills=[missed, seen_live], orders=[{"id": 1, "state": "partially_filled"}])
    auction = {"type": "auction", "auction": 9, "events": [{"type": "fill", "order_id": 1, "trades": [5]}]}
    stream = ScriptedPrivate(rest, [{"type": "hello"}, auction, "reconnect", "reconnect"])
    stream.connections = 1
    events = list(stream)
    assert [e["type"] for e in events] == ["hello", "auction", "resync", "resync"]
    assert events[2]["fills"] == [missed] and events[2]["orders"] == [{"id": 1, "state": "partially_filled"}]
    assert events[3]["fills"] == []  # nothing new since: the repeats are dropped
    assert len(rest.since) == 2 and all(since.tzinfo is not None for since in rest.since)
