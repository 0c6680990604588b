"""The engine as plain Python: ccp/book/engine.py loaded from its path, whether or not the compiled module
(bin/build_engine.py) is what `import ccp.book.engine` gives. Tests hold both to the same rules."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import astuple, fields
from functools import cache
from pathlib import Path
from types import ModuleType

from ccp.book import engine as E

PATH = Path(E.__file__).with_name("engine.py")
NAME = "ccp_book_engine_source"


@cache
def source_engine() -> ModuleType:
    spec = importlib.util.spec_from_file_location(NAME, PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # the dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def is_compiled(module: ModuleType) -> bool:
    return not module.__file__.endswith(".py")


def command_for(module: ModuleType, command):
    """The same command built from `module`'s classes (an engine dispatches on the class)."""
    values = []
    for f in fields(command):
        value = getattr(command, f.name)
        if f.name in ("tp", "sl") and value is not None:
            value = module.Leg(*astuple(value))
        values.append(value)
    return getattr(module, type(command).__name__)(*values)


def plain(events: list) -> list[tuple]:
    """Events as (class name, fields): comparable across the two modules' classes."""
    return [(type(e).__name__, astuple(e)) for e in events]
