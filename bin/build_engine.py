"""Compile the matching engine (ccp/book/engine.py) with mypyc; bin/bootstrap.sh runs it when engine.py changed.

engine.py stays the one source: plain, type-annotated Python that runs as it is and that mypyc compiles to a C
extension module (`ccp/book/engine.cpython-*.so` and its `engine__mypyc` library), which Python then imports in
its place. The C sources, objects and mypy's cache go under .var/mypyc; the two built files are moved next to
engine.py by a rename, so that a process that has the old ones loaded keeps running on them. Any error (a type
error mypyc refuses, a compiler error) ends the build with a non-zero status.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".var" / "mypyc"


def main() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    os.chdir(REPO)
    extensions = mypycify(["--follow-imports=skip", f"--cache-dir={WORK / 'cache'}", "ccp/book/engine.py"],
                          target_dir=str(WORK / "c"), opt_level="3")
    setup(name="ccp-book-engine", ext_modules=extensions,
          script_args=["build_ext", "--build-lib", str(WORK / "lib"), "--build-temp", str(WORK / "tmp")])
    built = sorted((WORK / "lib" / "ccp" / "book").glob("*.so"))
    if len(built) != 2:
        sys.exit(f"expected the engine and its library, built {[p.name for p in built]}")
    for path in built:
        os.replace(path, REPO / "ccp" / "book" / path.name)


if __name__ == "__main__":
    main()
