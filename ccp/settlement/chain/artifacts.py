"""Compile the Vyper contracts and load their committed build artifacts (pure Python, no Django).

Regenerate the committed files after editing a contract::

    .venv/bin/python -m ccp.settlement.chain.artifacts
"""

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTRACTS_DIR = HERE / "contracts"
BUILD_DIR = HERE / "build"
EVM_VERSION = "cancun"  # prague (vyper's default) is not yet accepted by py-evm and many nodes


def compile_contract(name: str) -> dict:
    """Compile contracts/<name>.vy with fixed settings; the same source always gives the same dict."""
    import vyper  # imported here: loading a committed artifact does not need the compiler
    from vyper.compiler.settings import Settings

    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    # A fixed relative contract_path keeps the output independent of where the checkout lives.
    out = vyper.compile_code(source, contract_path=f"{name}.vy", output_formats=["abi", "bytecode"],
                             settings=Settings(evm_version=EVM_VERSION))
    return {
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "vyper_version": vyper.__version__,
        "evm_version": EVM_VERSION,
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
    }


def dumps(artifact: dict) -> str:
    """The canonical text of an artifact: sorted keys, fixed indent, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=2) + "\n"


def load_artifact(name: str) -> dict:
    """The committed build/<name>.json (abi, bytecode, ...)."""
    return json.loads((BUILD_DIR / f"{name}.json").read_text())


def contract_names() -> list[str]:
    return sorted(p.stem for p in CONTRACTS_DIR.glob("*.vy"))


def write_artifacts() -> list[Path]:
    """Recompile every contract and rewrite its build file."""
    BUILD_DIR.mkdir(exist_ok=True)
    paths = []
    for name in contract_names():
        path = BUILD_DIR / f"{name}.json"
        path.write_text(dumps(compile_contract(name)))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_artifacts():
        print(f"wrote {written}")
