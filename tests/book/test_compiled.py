"""The engine the system imports is the one bin/bootstrap.sh compiled from ccp/book/engine.py as it is now: what
the tests exercise is what bench/book_engine.py measures, and a changed engine.py is never shadowed by an old
build."""

import hashlib
from pathlib import Path

from ccp.book import engine as E

from .source import PATH, is_compiled, source_engine

STAMP = Path(__file__).resolve().parents[2] / ".var" / "mypyc" / "engine.sha256"


def test_the_engine_is_the_compiled_module():
    assert is_compiled(E), f"ccp.book.engine comes from {E.__file__}, not from the module bin/bootstrap.sh builds"


def test_the_compiled_module_was_built_from_this_engine_py():
    assert STAMP.read_text().strip() == hashlib.sha256(PATH.read_bytes()).hexdigest()


def test_the_source_is_loaded_as_plain_python():
    module = source_engine()
    assert not is_compiled(module) and module.Engine is not E.Engine


def test_a_user_is_a_client_id_or_a_name():
    """The venue names users by client id (an int), the tests by name: the compiled engine's annotations, which it
    enforces, take both."""
    engine = E.Engine({7: 2})
    engine.apply(E.Submit("a", 7, "sell", 2, "limit", 100))
    trade = [e for e in engine.apply(E.Submit("b", "x", "buy", 2, "limit", 100)) if isinstance(e, E.Trade)]
    assert [(t.buy_user, t.sell_user, t.qty) for t in trade] == [("x", 7, 2)]
    assert engine.positions == {7: 0, "x": 2}
