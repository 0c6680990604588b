"""The one error a client call raises: the server's ``{"code", "message", "extra"}`` and the HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    """The server refused a request (or a stream). ``code`` is stable (see the README's error codes);
    ``status`` is the HTTP status, or the WebSocket close code for a stream."""

    def __init__(self, status: int, code: str, message: str = "", extra: dict | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}
