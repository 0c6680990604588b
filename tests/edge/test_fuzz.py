"""Issue 10, "must show": a property-based fuzz of the whole API from its served OpenAPI schema
(schemathesis, a fixed seed, bounded examples). Every response: no server error, a status the schema
documents, a body valid against the schema, and an error in the one shape."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ccp.accounts.models import ApiToken, FundLock
from ccp.accounts.services import token_hash
from ccp.clock import utcnow
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement
from tests.conftest import NOW
from tests.edge.conftest import error_of, served_schema
from tests.factories import ContractFactory, FundLockFactory, ReceivedOrderFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

EXAMPLES = 40  # per operation and generation mode (valid, and invalid, inputs)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    # Throttles off for the fuzzer's own bursts (they are tested in test_abuse.py); any wallet may
    # ask for a nonce.
    return {"CCP_THROTTLE_SIGNIN_IP": "", "CCP_THROTTLE_SIGNIN_ADDRESS": "", "CCP_THROTTLE_ORDERS": "",
            "CCP_THROTTLE_WITHDRAWALS": "", "CCP_SIGNIN_ALLOW_ANY": "1"}


@pytest.fixture
def trader_token() -> str:
    """A client with collateral, a contract, one of its orders, and a live API token."""
    contract = ContractFactory()
    fund = FundLockFactory(currency=contract.collateral, fundlock=D("1000000"))
    ReceivedOrderFactory(client=fund.client, contract=contract)
    # negative numbers in the answers too: a short position and a withdrawal not yet settled
    Position.objects.create(client=fund.client, contract=contract, quantity=D("-1"), updated_at=NOW)
    CashMovement.objects.create(client=fund.client, currency=contract.collateral, amount=D("-10"),
                                origin="withdrawal", origin_ref="withdrawal-1", created_at=NOW)
    FundLock.objects.filter(pk=fund.pk).update(settle_value=D("-10"))
    token = "fuzz-token-" + "x" * 20
    now = utcnow()
    ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=fund.client, created_at=now,
                            expires_at=now + timedelta(days=1))
    return token


schema = schemathesis.openapi.from_dict(served_schema())


def error_shape(ctx, response, case) -> None:
    """Every error response is in the one shape."""
    if response.status_code >= 400:
        error_of(response.content)


@schema.exclude(path="/api/v1/auth/signout").parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_holds_against_generated_requests(case, served, trader_token):
    # Every built-in check but "a schema-valid request is accepted": the schema cannot say every rule
    # (an EIP-55 checksum, a price on the contract's tick grid, enough collateral), and those refusals
    # are 4xx in the error shape, which the other checks hold them to.
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {trader_token}"},
                           additional_checks=[schemathesis.check(error_shape)],
                           excluded_checks=[positive_data_acceptance])
