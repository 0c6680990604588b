"""A requests transport that answers from recorded fixtures: the venue adapters run unchanged, ccxt included,
and only the socket is replaced."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


@dataclass(frozen=True)
class Answer:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    error: type[requests.RequestException] | None = None  # raised instead of answering, as the transport would
    delay_s: float = 0.0  # how long the venue takes; past the client's timeout the transport gives up


class Replay(HTTPAdapter):
    """Serves one host: each request's path must have a route, and its query the route's parameters."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host
        self.routes: dict[str, tuple[Answer, dict[str, str] | None]] = {}
        self.seen: list[tuple[str, float | None]] = []  # (url, timeout) of each request

    def route(self, path: str, answer: Answer, query: dict[str, str] | None = None) -> Replay:
        self.routes[path] = (answer, query)
        return self

    def mount_on(self, session: requests.Session) -> Replay:
        session.mount(f"https://{self.host}/", self)
        return self

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = urlsplit(request.url)
        assert url.hostname == self.host and url.path in self.routes, f"unexpected request {request.url}"
        answer, query = self.routes[url.path]
        if query is not None:
            assert dict(parse_qsl(url.query)) == query, f"{request.url}: expected query {query}"
        self.seen.append((request.url, timeout))
        if answer.delay_s and timeout is not None and answer.delay_s > timeout:
            time.sleep(timeout)  # urllib3 waits this long for the first byte, then gives up
            raise requests.exceptions.ReadTimeout(f"Read timed out. (read timeout={timeout})", request=request)
        if answer.error is not None:
            raise answer.error(f"{answer.error.__name__} to {self.host}", request=request)
        raw = urllib3.HTTPResponse(body=io.BytesIO(answer.body), status=answer.status,
                                   reason=HTTPStatus(answer.status).phrase, preload_content=False,
                                   headers={"Content-Type": answer.content_type,
                                            "Content-Length": str(len(answer.body))})
        return self.build_response(request, raw)
