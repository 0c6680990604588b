import pytest

from ccp.settlement.chain.artifacts import BUILD_DIR, compile_contract, contract_names, dumps, load_artifact


def test_every_contract_has_an_artifact():
    assert contract_names() == ["FundLock", "TestToken"]


@pytest.mark.parametrize("name", ["FundLock", "TestToken"])
def test_committed_artifact_is_current(name):
    # Fails after a contract edit until `python -m ccp.settlement.chain.artifacts` is run.
    assert (BUILD_DIR / f"{name}.json").read_text() == dumps(compile_contract(name))
    assert load_artifact(name)["evm_version"] == "cancun"
