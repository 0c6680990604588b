import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_health_answers_without_a_token():
    response = APIClient().get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "ok"


def test_unknown_api_route_and_wrong_method_use_the_error_shape():
    api = APIClient()
    assert api.get("/api/v1/auth/nonce").json()["code"] == "method_not_allowed"
    response = api.post("/api/v1/auth/nonce", data="address=0x1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


def test_openapi_schema_is_valid_and_documents_the_error_shape(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"/api/v1/auth/nonce", "/api/v1/auth/token", "/api/v1/orders", "/api/v1/balances"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message", "extra"]
    submit = schema["paths"]["/api/v1/orders"]["post"]["responses"]
    assert {"202", "400", "401", "409"} <= set(submit)
    assert submit["400"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"


def test_swagger_ui_is_served_without_a_cdn():
    page = APIClient().get("/api/v1/docs/")
    assert page.status_code == 200 and b"/static/drf_spectacular_sidecar/" in page.content


def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_demo_command_is_idempotent():
    from ccp.contracts.models import Contract

    call_command("ccp_demo", verbosity=0)
    count = Contract.objects.count()
    call_command("ccp_demo", verbosity=0)
    assert count > 0 and Contract.objects.count() == count
