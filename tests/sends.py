"""Stream sends recorded as they go out to the real channel layer."""

from collections.abc import Callable

from ccp import streams


def sends_recorded(monkeypatch, record: Callable[[list], None]) -> None:
    """Every ``ccp.streams._send`` hands its messages ((group, message), in order) to ``record``, then sends them
    as it would (with the bytes ``stream_messages_prepare`` serialized, when it did)."""
    send = streams._send

    def recording(messages, prepared=None):
        record(messages)
        send(messages, prepared)

    monkeypatch.setattr(streams, "_send", recording)
