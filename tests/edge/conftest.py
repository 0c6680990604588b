"""The API edge against the real server process (``python -m ccp.server``, as bin/run starts it):
what only a served request meets (Twisted's parsing, body limits, WebSocket frame limits, a crash
that kills the process) is tested over sockets."""

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message

import pytest
import websockets

from tests.processes import REPO, free_port, process_env, wait_for


class Served:
    def __init__(self, proc: subprocess.Popen, port: int, log_path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
        """(status, headers, body) of one request; error statuses are answers, not exceptions. Header
        names are case-insensitive, as in HTTP (uvicorn sends them as the application wrote them)."""
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def alive(self) -> bool:
        """The process still runs and answers."""
        return self.proc.poll() is None and self.request("GET", "/api/v1/ping")[0] == 200

    def ws_exchange(self, path: str, frame: str | None = None, timeout_s: float = 5) -> tuple[list[str], int | None]:
        """Messages received on ``path`` (after sending ``frame``) until it closes or goes quiet, and
        the close code (None: still open, or dropped without one)."""

        async def run():
            received = []
            async with websockets.connect(self.ws_url + path, open_timeout=timeout_s, max_size=None) as ws:
                if frame is not None:
                    await ws.send(frame)
                try:
                    while True:
                        received.append(await asyncio.wait_for(ws.recv(), 1))
                except websockets.ConnectionClosed as closed:
                    return received, closed.rcvd.code if closed.rcvd else None
                except TimeoutError:
                    return received, None

        return asyncio.run(run())


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    """Settings of the served process (environment variables); a module may override this fixture."""
    return {}


@pytest.fixture(scope="module")
def served(django_db_setup, django_db_blocker, tmp_path_factory, served_env):
    """One server process for the module, against the test database."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("served") / "server.log"
    with django_db_blocker.unblock():
        env = {**process_env(), **served_env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ccp.server", "-b", "127.0.0.1", "-p", str(port),
                                 "ccp.asgi:application"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Served(proc, port, log_path)
    try:
        wait_for(lambda: proc.poll() is not None or _answers(server), 60, "the server")
        assert proc.poll() is None, log_path.read_text()
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"--- server log\n{log_path.read_text()[-4000:]}")


def _answers(server: Served) -> bool:
    try:
        return server.request("GET", "/api/v1/ping")[0] == 200
    except OSError:
        return False


def error_of(body: bytes) -> dict:
    """The parsed error shape; fails the test when the body is not in it."""
    parsed = json.loads(body)
    assert set(parsed) == {"code", "message", "extra"}, parsed
    assert isinstance(parsed["code"], str) and isinstance(parsed["message"], str) and isinstance(parsed["extra"], dict)
    return parsed


def served_schema() -> dict:
    """The OpenAPI document /api/v1/schema/ serves, as JSON."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
