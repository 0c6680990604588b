"""What every API request meets before its view, made cheaper without changing an answer: the content
negotiation answers the common ``Accept: */*`` at once, exactly as DRF would; Django's messages are not set up
for the API; order entry's routes are tried first, and every route still resolves to itself."""

import pytest
from django.conf import settings
from django.test import Client, override_settings
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
def test_the_api_gets_no_message_store_session_or_django_user_and_the_admin_does():
    api = Client().get("/api/v1/ping")
    assert api.status_code == 200
    assert not any(hasattr(api.wsgi_request, name) for name in ("_messages", "session", "user"))
    admin = Client().get("/admin/login/")
    assert admin.status_code == 200
    assert all(hasattr(admin.wsgi_request, name) for name in ("_messages", "session", "user"))


# The middleware as Django and WhiteNoise ship it, in the same order: what ccp.negotiation's Admin* ones stand for.
STOCK_MIDDLEWARE = [{"ccp.negotiation.AdminStaticMiddleware": "whitenoise.middleware.WhiteNoiseMiddleware",
                     "ccp.negotiation.AdminSessionMiddleware": "django.contrib.sessions.middleware.SessionMiddleware",
                     "ccp.negotiation.AdminAuthenticationMiddleware":
                         "django.contrib.auth.middleware.AuthenticationMiddleware",
                     "ccp.negotiation.AdminMessageMiddleware": "django.contrib.messages.middleware.MessageMiddleware",
                     }.get(name, name) for name in settings.MIDDLEWARE]

# (method, path, body, headers): answered, refused and failed API requests, with and without cookies
API_REQUESTS = [
    ("get", "/api/v1/ping", None, {}),
    ("post", "/api/v1/ping", "{}", {}),  # a plain Django view: CSRF refuses it
    ("post", "/api/v1/ping", "{}", {"HTTP_COOKIE": "csrftoken=" + "a" * 32}),
    ("get", "/api/v1/ping", None, {"HTTP_COOKIE": "sessionid=abc; csrftoken=short; messages=x"}),
    ("get", "/api/v1/ping", None, {"HTTP_HOST": "evil.example"}),
    ("get", "/api/v1/orders", None, {}),
    ("get", "/api/v1/orders", None, {"HTTP_AUTHORIZATION": "Bearer nope"}),
    ("post", "/api/v1/orders", "{", {"HTTP_AUTHORIZATION": "Bearer nope"}),
    ("post", "/api/v1/orders", "{}", {"HTTP_COOKIE": "sessionid=abc"}),
    ("get", "/api/v1/contracts", None, {}),
    ("get", "/api/v1/contracts?limit=0", None, {}),
    ("get", "/api/v1/no-such-route", None, {}),
    ("get", "/api/v1/orders/", None, {}),  # a slash too many: no redirect for the API
    ("delete", "/api/v1/contracts", None, {}),
    ("get", "/api/v1/static/x.css", None, {}),
]


def _answer(method: str, path: str, body: str | None, headers: dict) -> tuple[int, dict, bytes]:
    kwargs = {} if body is None else {"data": body, "content_type": "application/json"}
    response = getattr(Client(), method)(path, **kwargs, **headers)
    return response.status_code, dict(response.headers), response.content


@pytest.mark.django_db
@pytest.mark.parametrize("request_", API_REQUESTS, ids=lambda r: f"{r[0]} {r[1]} {sorted(r[3])}")
def test_the_api_answers_as_with_djangos_own_middleware(request_):
    ours = _answer(*request_)
    with override_settings(MIDDLEWARE=STOCK_MIDDLEWARE):
        stock = _answer(*request_)
    assert ours == stock


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
