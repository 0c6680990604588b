"""What every API request meets before its view, made cheaper without changing an answer: the content
negotiation answers the common ``Accept: */*`` at once, exactly as DRF would; Django's messages are not set up
for the API; order entry's routes are tried first, and every route still resolves to itself."""

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from ccp.negotiation import ContentNegotiation

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "*/*; indent=2", "application/*",
           "text/html, */*;q=0.8", "*/*, text/html", " */*"]


def negotiated(negotiation, accept: str | None, query: str, renderers):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/orders" + query, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers)
    except Exception as exc:  # noqa: BLE001  (the refusal must be the same too)
        return type(exc).__name__, str(exc)
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?limit=1"])
@pytest.mark.parametrize("renderers", [[JSONRenderer()], [JSONRenderer(), BrowsableAPIRenderer()],
                                       [BrowsableAPIRenderer(), JSONRenderer()]])
def test_the_negotiation_answers_as_drfs_own(accept, query, renderers):
    assert (negotiated(ContentNegotiation(), accept, query, renderers)
            == negotiated(DefaultContentNegotiation(), accept, query, renderers))


@pytest.mark.parametrize("accept", [None, "*/*"])
def test_accept_anything_is_answered_without_parsing_the_header(accept):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/orders", **headers))
    assert ContentNegotiation().select_renderer(request, [JSONRenderer()])[1] == "application/json"
    assert not hasattr(request, "_parsed_accept_list")


@pytest.mark.django_db
def test_the_api_gets_no_message_store_and_the_admin_does():
    api = Client().get("/api/v1/ping")
    assert api.status_code == 200
    assert not hasattr(api.wsgi_request, "_messages")
    admin = Client().get("/admin/login/")
    assert admin.status_code == 200
    assert hasattr(admin.wsgi_request, "_messages")


def _named_routes(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _named_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            yield prefix + str(entry.pattern), entry.name, list(entry.pattern.converters)


SAMPLES = {"order_id": 7, "symbol": "BTC-USDC-20261225-F", "pk": 3, "object_id": 3}


def test_every_api_route_resolves_to_itself():
    routes = [r for r in _named_routes(get_resolver()) if r[0].startswith("api/v1/")]
    assert len(routes) > 20
    for route, name, arguments in routes:
        path = reverse(name, kwargs={a: SAMPLES[a] for a in arguments})
        assert resolve(path).url_name == name, route
