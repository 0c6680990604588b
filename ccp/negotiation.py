"""The API's content negotiation and the admin-only middleware: what every API request meets, made cheap where
it can be without changing an answer."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from rest_framework.negotiation import DefaultContentNegotiation
from whitenoise.middleware import WhiteNoiseMiddleware

API_PREFIX = "/api/"


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with its answer for the common request given at once: no ``Accept`` header or
    ``Accept: */*``, no query string (no ``?format=``) and no format suffix get the first renderer with its
    own media type, which is what DRF's parsing of the header and its precedence walk end with (``*/*``
    matches every renderer and is less specific than any). Anything else is negotiated by DRF."""

    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request._request.META
        if (not format_suffix and renderers and meta.get("HTTP_ACCEPT", "*/*") == "*/*"
                and not meta.get("QUERY_STRING") and "*" not in renderers[0].media_type):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


class _NotForApi:
    """A middleware of the admin's pages that an API request (a path under ``API_PREFIX``) passes by, straight to
    the next: the API reads no session, no Django user (its views authenticate with a bearer token), shows no
    message and serves no static file. These four cost every API request about 35 us of CPU, a single order
    about 3% of the server's (tests/edge/test_request_path.py: the API answers as with Django's own)."""

    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX) and self.passes_by(request):
            return self.get_response(request)
        return super().__call__(request)

    def passes_by(self, request) -> bool:
        return True


class AdminStaticMiddleware(_NotForApi, WhiteNoiseMiddleware):
    """WhiteNoise's static files (under STATIC_URL), not looked for under the API's paths."""


class AdminSessionMiddleware(_NotForApi, SessionMiddleware):
    """Django's sessions (the admin's sign-in) for every page but the API's, unless the request has a session
    cookie: Django's deletes one that names no session (an API answer too), as it did before."""

    def passes_by(self, request) -> bool:
        return settings.SESSION_COOKIE_NAME not in request.COOKIES


class AdminAuthenticationMiddleware(_NotForApi, AuthenticationMiddleware):
    """Django's ``request.user`` (the admin's operator) for every page but the API's (and what has a session)."""

    def passes_by(self, request) -> bool:
        return not hasattr(request, "session")


class AdminMessageMiddleware(_NotForApi, MessageMiddleware):
    """Django's messages (the admin's notices after an action) for every page but the API's: building a
    message store (cookie and session storages) was a measurable part of a request's work."""
