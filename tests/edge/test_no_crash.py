"""Issue 10, class 1: no input of any shape or size crashes a process.

A dependency (py_ecc, imported through eth_account) raised the recursion limit to 100,000, so a deeply
nested JSON text overflowed the C stack in the parser and daphne died with SIGSEGV (over HTTP and as
one WebSocket frame)."""

import subprocess
import sys

import pytest

from tests.edge.conftest import error_of
from tests.processes import REPO

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_the_recursion_limit_is_safe_whatever_was_imported_first():
    # eth_account first, as a library user would, then the project: the limit is Python's default.
    code = ("import sys, eth_account, web3; import django, os; os.environ['DJANGO_SETTINGS_MODULE']='ccp.settings'; "
            "django.setup(); import ccp.asgi, celery_app; print(sys.getrecursionlimit())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) <= 1000


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_deep_json_under_the_body_limit_is_refused_and_the_server_lives(served):
    status, _, body = served.request("POST", "/api/v1/auth/nonce", deep(30_000),
                                     {"Content-Type": "application/json"})
    assert status == 400 and error_of(body)["code"] == "nesting_too_deep"
    # nested deeper than the limit inside a string is only text: not refused as nesting
    status, _, body = served.request("POST", "/api/v1/auth/nonce", b'{"address": "' + b"[" * 100 + b'"}',
                                     {"Content-Type": "application/json"})
    assert status == 400 and error_of(body)["code"] == "invalid_input"
    assert served.alive()


def test_the_issue_s_200_kb_body_is_refused_before_parsing(served):
    status, _, body = served.request("POST", "/api/v1/auth/nonce", deep(100_000),
                                     {"Content-Type": "application/json"})
    assert status == 413 and error_of(body)["code"] == "body_too_large"
    assert served.alive()


def test_a_deep_websocket_frame_closes_that_stream_only(served):
    # under the frame limit: a stream takes no messages and never parses one
    messages, _ = served.ws_exchange("/ws/v1/system", deep(30_000).decode())
    assert error_of(messages[0].encode())["code"] == "read_only"
    # the issue's frame (200 KB) is over the limit: closed with 1009, message too big
    _, code = served.ws_exchange("/ws/v1/system", deep(100_000).decode())
    assert code == 1009
    assert served.alive()
