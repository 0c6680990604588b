"""Issue 10, class 4: one error shape everywhere, and refusals a client can read."""

import pytest
from django.db import InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

from ccp.errors import api_exception_handler
from tests.edge.conftest import error_of
from tests.factories import ClientFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("path", ["/api/v1/orders/-1", "/api/v1/orders/abc", "/api/v1/nothing", "/api/v2/orders",
                                  "/nothing", "/api/v1/contracts/NOPE", "/api/v1/contracts/NOPE/book"])
def test_unknown_paths_and_ids_are_json_404s(api_as, path):
    response = api_as(ClientFactory()).get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert error_of(response.content)["code"] in {"not_found", "order_not_found"}


def test_the_admin_keeps_its_html_pages(client):
    response = client.get("/admin/nothing/here/")
    assert response.status_code in {302, 404} and "application/json" not in response.get("Content-Type", "")


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data; boundary=zz", b"garbage"),
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="address"\r\n\r\n0x1\r\n--b--\r\n'),
    ("application/x-www-form-urlencoded", b"address=0x1"),
    ("text/plain", b"hello"),
])
def test_non_json_bodies_get_the_error_shape_from_the_served_app(served, content_type, body):
    status, headers, answer = served.request("POST", "/api/v1/auth/nonce", body, {"Content-Type": content_type})
    assert status in {400, 415} and error_of(answer)["code"] in {"unsupported_media_type", "malformed_request"}


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/nothing"), ("DELETE", "/api/v1/contracts"),
                                              ("PUT", "/api/v1/orders/1"), ("GET", "/api/v1/orders/-1")])
def test_the_served_app_answers_errors_in_the_shape(served, method, path):
    status, headers, body = served.request(method, path)
    assert 400 <= status < 500 and headers["Content-Type"] == "application/json"
    error_of(body)


@pytest.mark.parametrize(("method", "path"), [("OPTIONS", "/api/v1/docs/"), ("POST", "/api/v1/docs/"),
                                              ("POST", "/api/v1/ping"), ("DELETE", "/api/v1/ping"),
                                              ("TRACE", "/api/v1/ping")])
def test_pages_for_get_only_refuse_other_methods_with_405(served, method, path):
    # OPTIONS on the docs page was a 500 (its template is named by GET only); a POST to ping met Django's CSRF
    # check (403 permission_denied), a TRACE was answered 200
    status, headers, body = served.request(method, path)
    assert status == 405 and error_of(body)["code"] == "method_not_allowed"
    assert served.request("GET", path)[0] == 200


@pytest.mark.parametrize("path", ["/api/v1/contracts", "/api/v1/schema/"])
@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png"])
def test_an_accept_header_json_cannot_satisfy_is_406(served, path, accept):
    # the schema renders its refusal in YAML: the edge gave it the shape, with code invalid_request
    status, _, body = served.request("GET", path, headers={"Accept": accept})
    assert status == 406 and error_of(body)["code"] == "not_acceptable"
    for satisfied in ["application/json", "application/*", "*/*"]:
        assert served.request("GET", path, headers={"Accept": satisfied})[0] == 200


def test_a_refused_stream_completes_the_handshake_and_closes_with_its_code(served):
    assert served.ws_exchange("/ws/v1/private") == ([], 4401)
    assert served.ws_exchange("/ws/v1/private?token=nonsense") == ([], 4401)
    assert served.ws_exchange("/ws/v1/book/NOPE-USDC-20261225-100000-C") == ([], 4404)


@pytest.mark.parametrize("error", [OperationalError("the connection is closed"), InterfaceError("gone"),
                                   PoolTimeout("couldn't get a connection after 30.00 sec")])
def test_a_database_outage_is_a_503_to_retry_not_a_500(error):
    response = api_exception_handler(error, {})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.data["code"] == "unavailable" and response.data["extra"] == {"retry_after_s": 5}

