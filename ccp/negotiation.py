"""The API's content negotiation and the admin-only middleware: what every API request meets, made cheap where
it can be without changing an answer."""

from __future__ import annotations

from django.contrib.messages.middleware import MessageMiddleware
from rest_framework.negotiation import DefaultContentNegotiation

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


class AdminMessageMiddleware(MessageMiddleware):
    """Django's messages (the admin's notices after an action) for every page but the API's: an API request
    neither shows nor stores one, and building its message store (cookie and session storages) was a
    measurable part of a request's work."""

    def process_request(self, request):
        if not request.path_info.startswith(API_PREFIX):
            super().process_request(request)
