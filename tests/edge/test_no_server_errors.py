"""Issue 10, class 2: inputs that got a 500 (internal_error) get a 4xx in the error shape and change
nothing."""

import pytest

from ccp.orders.models import Order
from ccp.settlement.models import Withdrawal
from tests.edge.conftest import error_of
from tests.factories import ContractFactory, FundLockFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

HUGE = "100000000000000000000000000000000000000000000.0000000000000000001"


@pytest.fixture
def trader():
    contract = ContractFactory()
    fund = FundLockFactory(currency=contract.collateral)
    fund.currency.token_address = "0x" + "ab" * 20
    fund.currency.save()
    return fund.client, contract


@pytest.mark.parametrize("field", ["price", "quantity"])
@pytest.mark.parametrize("text", [HUGE, "1e999999999", "0E-1000000"])
def test_order_numbers_that_crashed_are_refused(api_as, trader, field, text):
    client, contract = trader
    body = {"client_order_id": "o-1", "contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1",
            field: text}
    response = api_as(client).post("/api/v1/orders", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_number"
    assert not Order.objects.exists()


@pytest.mark.parametrize("text", [HUGE, "1e999999999", "0E-1000000"])
def test_withdrawal_amounts_that_crashed_are_refused(api_as, trader, text):
    client, _ = trader
    body = {"client_withdrawal_id": "w-1", "currency": "USDC", "amount": text}
    response = api_as(client).post("/api/v1/withdrawals", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_number"
    assert not Withdrawal.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/contracts", "/api/v1/orders", "/api/v1/withdrawals", "/api/v1/positions"])
@pytest.mark.parametrize("query", ["limit=99999999999999999999", "offset=99999999999999999999", "limit=0",
                                   "limit=-1", "limit=1001", "limit=abc", "offset=-5", "limit=%D9%A1"])
def test_out_of_range_pages_are_refused(api_as, trader, path, query):
    response = api_as(trader[0]).get(f"{path}?{query}")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"


@pytest.mark.parametrize("path", ["/api/v1/contracts", "/api/v1/orders", "/api/v1/fills", "/api/v1/stats",
                                  "/api/v1/auth/me", "/api/v1/index"])
def test_more_query_parameters_than_django_reads_are_malformed(api_as, trader, path):
    # Django refuses to read over DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) parameters; in a DRF view that was a 500
    response = api_as(trader[0]).get(path + "?" + "&".join(f"p{i}=1" for i in range(1001)))
    assert response.status_code == 400 and error_of(response.content)["code"] == "malformed_request"
    response = api_as(trader[0]).get(path + "?" + "&".join(f"p{i}=1" for i in range(1000)))
    assert response.status_code == 400 and error_of(response.content)["code"] == "invalid_input"  # unknown ones


def test_pages_within_range_are_served(api_as, trader):
    response = api_as(trader[0]).get("/api/v1/contracts?limit=1000&offset=2147483647")
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("path", ["/api/v1/contracts/%00", "/api/v1/contracts/%00/book", "/api/v1/contracts/a%00b",
                                  "/api/v1/orders/%00", "/api/v1/contracts/%ff%fe"])
def test_nul_and_undecodable_bytes_in_a_path_are_404(served, path):
    status, headers, body = served.request("GET", path)
    assert status == 404 and error_of(body)["code"] == "not_found"


def test_nul_bytes_inside_json_strings_are_refused(api_as, trader):
    client, contract = trader
    for field in ("contract", "client_order_id"):
        body = {"client_order_id": "o-1", "contract": contract.symbol, "side": "buy", "price": "100", "quantity": "1",
                field: "a\u0000b"}
        response = api_as(client).post("/api/v1/orders", body, format="json")
        assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    # a lone surrogate is not text: the body is refused whole (tests/edge/test_lone_surrogates.py)
    response = api_as(client).post("/api/v1/orders", data='{"client_order_id": "o-1", "contract": "\\ud800"}',
                                   content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"
    assert api_as(client).get("/api/v1/orders?contract=%00").status_code == 400


def test_a_body_over_the_limit_is_413(served):
    status, _, body = served.request("POST", "/api/v1/auth/nonce", b'{"address": "' + b"0" * 70_000 + b'"}',
                                     {"Content-Type": "application/json"})
    assert status == 413 and error_of(body)["code"] == "body_too_large"


def test_a_lying_or_broken_content_length_is_refused(served):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.putrequest("POST", "/api/v1/auth/nonce")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", "99999999999999999999")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and error_of(response.read())["code"] == "body_too_large"
    connection.close()


def test_a_chunked_body_is_cut_off_as_it_grows_past_the_limit(served):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    chunks = (b"[" * 8192 for _ in range(1000))  # 8 MB if it were all read
    try:
        connection.request("POST", "/api/v1/auth/nonce", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json"})
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection while the body was still being sent
    response = connection.getresponse()
    assert response.status == 413 and error_of(response.read())["code"] == "body_too_large"
    connection.close()
    assert served.alive()


@pytest.mark.parametrize("path", ["/ws/v1/nothing", "/ws/v1/book/%00", "/ws/v1/book/a/b", "/ws/v2/system", "/"])
def test_unknown_websocket_paths_close_with_4404(served, path):
    assert served.ws_exchange(path) == ([], 4404)
    assert served.alive()
