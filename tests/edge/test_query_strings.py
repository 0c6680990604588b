"""Query strings (``ccp.query.query_check``): only the parameters an operation documents, each given once;
anything else is ``invalid_input`` naming the parameter. A parameter given twice was read as its last value
(``?state=received&state=accepted`` answered the accepted orders alone, as if asked for both)."""

import pytest

from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api_as):
    contract = ContractFactory()
    client = FundLockFactory(currency=contract.collateral).client
    ReceivedOrderFactory(client=client, contract=contract)
    ReceivedOrderFactory(client=client, contract=contract, state="accepted")
    return api_as(client), contract


def paths(contract) -> list[tuple[str, str]]:
    """(path, a parameter it takes, with a value) of the operations with a query string."""
    symbol = contract.symbol
    return [("/api/v1/orders", "state=accepted"), ("/api/v1/orders", "limit=10"), ("/api/v1/contracts", "kind=call"),
            ("/api/v1/fills", "limit=10"), (f"/api/v1/contracts/{symbol}/trades", "limit=10"),
            (f"/api/v1/contracts/{symbol}/candles?interval=1m", "limit=10"), ("/api/v1/stats", "offset=0"),
            ("/api/v1/statement/lines?currency=USDC", "limit=10"), ("/api/v1/withdrawals", "limit=10"),
            ("/api/v1/positions", "offset=0"), ("/api/v1/lockups", "offset=0")]


def fields_of(response) -> dict:
    assert response.status_code == 400 and response.json()["code"] == "invalid_input", response.content
    return response.json()["extra"]["fields"]


def test_a_parameter_given_twice_is_refused(api):
    api, contract = api
    for path, param in paths(contract):
        joiner = "&" if "?" in path else "?"
        assert api.get(f"{path}{joiner}{param}").status_code == 200, path
        name = param.split("=")[0]
        assert fields_of(api.get(f"{path}{joiner}{param}&{param}")) == {name: ["Given more than once."]}, path


def test_the_filter_s_two_values_are_not_read_as_the_last(api):
    api, _ = api
    assert [o["state"] for o in api.get("/api/v1/orders?state=accepted").json()["results"]] == ["accepted"]
    assert fields_of(api.get("/api/v1/orders?state=received&state=accepted")) == {"state": ["Given more than once."]}


def test_an_unknown_parameter_is_refused_with_any_repeated_one(api):
    api, contract = api
    for path, _ in paths(contract):
        joiner = "&" if "?" in path else "?"
        assert fields_of(api.get(f"{path}{joiner}stat=filled")) == {"stat": ["Unknown query parameter."]}, path
    assert fields_of(api.get("/api/v1/orders?zz=1&zz=2&limit=1&limit=2")) == {
        "limit": ["Given more than once."], "zz": ["Unknown query parameter."]}
