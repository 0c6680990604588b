"""The HTTP edge of the ASGI application: what every request meets before Django.

- A body larger than ``CCP_MAX_BODY_BYTES`` is refused with 413 ``body_too_large`` before anything
  reads it into memory (by its Content-Length, or while it arrives when it has none).
- Every error response outside the admin is in the API's one shape ``{"code", "message", "extra"}``:
  Django answers a few requests itself before any view or handler runs (an undecodable request, a
  body over its own limits), with an HTML or empty body; those bodies are replaced here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from ccp.errors import STATUS_CODES, error_body

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OWN_PAGES = ("/admin/", "/static/")  # HTML for people: left as Django renders it


async def _send_error(send: Send, status: int, code: str, message: str, extra: dict | None = None) -> None:
    body = json.dumps(error_body(code, message, extra)).encode()
    # The body was left unread: the server closes the connection after the answer instead of
    # reading (and throwing away) the rest of it.
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class HttpEdge:
    def __init__(self, app, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ("body_too_large", f"The request body is larger than {self.max_body_bytes} bytes.",
                     {"max_bytes": self.max_body_bytes})
        length = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _send_error(send, 413 if length.isdigit() else 400,
                              *(too_large if length.isdigit() else ("malformed_request", "Bad Content-Length.", {})))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, *too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        path = scope.get("path", "")
        if path.startswith(_OWN_PAGES):
            await self.app(scope, replay, send)
        else:
            await self.app(scope, replay, _ErrorShape(send))


class _ErrorShape:
    """Wraps ``send``: an error response (4xx, 5xx) whose body is not JSON gets the one error shape."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.replacing = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            content_type = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            if status >= 400 and not content_type.startswith(b"application/json"):
                self.replacing = True
                code, text = STATUS_CODES.get(status, ("invalid_request" if status < 500 else "internal_error",
                                                       "The request failed."))
                self.body = json.dumps(error_body(code, text)).encode()
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-type", b"content-length")]
                message = {**message, "headers": [*headers, (b"content-type", b"application/json"),
                                                  (b"content-length", str(len(self.body)).encode())]}
            await self.send(message)
        elif self.replacing:
            if not message.get("more_body", False):
                await self.send({"type": "http.response.body", "body": self.body})
        else:
            await self.send(message)
