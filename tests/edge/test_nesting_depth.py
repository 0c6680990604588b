"""ccp.parsers.nesting_depth: a body without escapes is counted from its brackets and quotes alone, to the
depth the token by token scan gives (which bodies with escapes still take)."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ccp.parsers import _TOKENS, nesting_depth


def scanned(body: bytes) -> int:
    """The depth as it was counted: one bracket or none counted as it is, else token by token (strings skipped
    whole, brackets counted)."""
    if body.count(b"[") + body.count(b"{") <= 1:
        return body.count(b"[") + body.count(b"{")
    depth = deepest = 0
    for token in _TOKENS.finditer(body):
        if token[0][:1] in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token[0][:1] in (b"]", b"}"):
            depth -= 1
    return deepest


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b",", b"\n",
                                                          b"\xff"]), max_size=40).map(b"".join))
def test_any_body_has_the_depth_of_the_token_scan(body):
    assert nesting_depth(body) == scanned(body)


def test_json_bodies():
    batch = json.dumps({"orders": [{"client_order_id": f"a{i}", "note": "[{]"} for i in range(100)]}).encode()
    assert nesting_depth(batch) == scanned(batch) == 3
    deep = b"[" * 40 + b"]" * 40
    assert nesting_depth(deep) == 40
    assert nesting_depth(b'{"a": "[[[[", "b": [[1]]}') == 3
    assert nesting_depth(b'{"a": "\\"[[[", "b": [1]}') == 2
