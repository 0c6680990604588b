"""One application error type, rendered everywhere as ``{"code", "message", "extra"}``.

Codes are stable strings a client can branch on; messages are for people and may change.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
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


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "invalid_request")
        if isinstance(exc, drf.ValidationError):
            return Response(error_body(code, "The request has invalid fields.", {"fields": exc.detail}),
                            status=exc.status_code)
        headers = {}
        if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    logger.exception("unhandled API error", exc_info=exc)
    return Response(error_body("internal_error", "Internal error; the request may not have been applied."),
                    status=status.HTTP_500_INTERNAL_SERVER_ERROR)
