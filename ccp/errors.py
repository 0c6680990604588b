"""One application error type, rendered everywhere as ``{"code", "message", "extra"}``.

Codes are stable strings a client can branch on; messages are for people and may change.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django import db
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from psycopg_pool import PoolTimeout
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A caller broke a rule: the request changes nothing and gets this code back."""

    code = "invalid_request"
    http_status = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.extra = extra or {}
        self.http_status = http_status or self.http_status


class NotFound(ApplicationError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND


class Unauthorized(ApplicationError):
    code = "not_authenticated"
    http_status = status.HTTP_401_UNAUTHORIZED


class Conflict(ApplicationError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "extra": extra or {}}


# The code and message of an error response that no view wrote (no route, a request Django refused
# before any view ran, a crash), by HTTP status.
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("malformed_request", "The request could not be read."),
    403: ("permission_denied", "Not allowed."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "Method not allowed."),
    406: ("not_acceptable", "Could not satisfy the request Accept header."),
    413: ("body_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type in the request."),
    429: ("throttled", "Too many requests."),
    500: ("internal_error", "Internal error; the request may not have been applied."),
    503: ("unavailable", "The clearing house cannot reach its database; retry shortly."),
}

# The database is down or restarting (its connection died, or none could be had in time): not a
# bug, not the client's fault; the request changed nothing that committed.
UNAVAILABLE_RETRY_AFTER_S = 5


def _status_response(request, status: int, page, *args) -> HttpResponse:
    if request.path.startswith("/admin/"):  # people read the webconsole: Django's HTML page
        return page(request, *args)
    return JsonResponse(error_body(*STATUS_CODES[status]), status=status)


# Django's error views (ccp.urls), in the one shape; HTML error pages are for the admin only.
def handler400(request, exception=None) -> HttpResponse:
    return _status_response(request, 400, defaults.bad_request, exception)


def handler403(request, exception=None) -> HttpResponse:
    return _status_response(request, 403, defaults.permission_denied, exception)


def handler404(request, exception=None) -> HttpResponse:
    return _status_response(request, 404, defaults.page_not_found, exception)


def handler500(request) -> HttpResponse:
    return _status_response(request, 500, defaults.server_error)


# DRF's own exceptions, mapped to our stable codes.
_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ParseError, "malformed_request"),
    (drf.ValidationError, "invalid_input"),
    (drf.AuthenticationFailed, "not_authenticated"),
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "throttled"),
]


# Field errors whose code is also the response's code when every field error has it.
PROMOTED_FIELD_CODES = frozenset({"invalid_number"})


def _leaf_codes(detail) -> set[str]:
    if isinstance(detail, dict):
        return set().union(*(_leaf_codes(v) for v in detail.values())) if detail else set()
    if isinstance(detail, list):
        return set().union(*(_leaf_codes(v) for v in detail)) if detail else set()
    return {getattr(detail, "code", "invalid")}


def _validation_code(detail) -> str:
    codes = _leaf_codes(detail)
    return codes.pop() if len(codes) == 1 and codes <= PROMOTED_FIELD_CODES else "invalid_input"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, SuspiciousOperation):
        # Django refusing to read the request (more query parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS): a 400, as
        # Django answers it outside DRF's views
        exc = drf.ParseError(f"The request could not be read: {exc}")
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "invalid_request")
        if isinstance(exc, drf.ValidationError):
            return Response(error_body(_validation_code(exc.detail), "The request has invalid fields.",
                                       {"fields": exc.detail}), status=exc.status_code)
        headers, extra = {}, {}
        if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        if isinstance(exc, drf.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
            extra["retry_after_s"] = int(headers["Retry-After"])
        return Response(error_body(code, str(exc.detail), extra), status=exc.status_code, headers=headers)
    if isinstance(exc, (db.OperationalError, db.InterfaceError, PoolTimeout)):
        logger.warning("database unavailable: %s", exc)
        return Response(error_body(*STATUS_CODES[503], {"retry_after_s": UNAVAILABLE_RETRY_AFTER_S}),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})
    logger.exception("unhandled API error", exc_info=exc)
    return Response(error_body("internal_error", "Internal error; the request may not have been applied."),
                    status=status.HTTP_500_INTERNAL_SERVER_ERROR)
