from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.authentication import BaseAuthentication

from ccp.accounts.services import api_token_authenticate
from ccp.clock import utcnow
from ccp.errors import Unauthorized
from ccp.throttling import client_count


def bearer_token(header: bytes) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is no header."""
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="token_invalid")
    return token.strip()


def _authorization(request) -> bytes:
    """DRF's ``get_authorization_header``, read from META: ``request.headers`` (which it reads) builds a mapping of
    every header of the request for this one."""
    header = request.META.get("HTTP_AUTHORIZATION", b"")
    return header.encode(HTTP_HEADER_ENCODING) if isinstance(header, str) else header


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>`` from wallet sign-in; request.user is the Client."""

    def authenticate(self, request):
        token = bearer_token(_authorization(request))
        if token is None:
            return None
        api_token = api_token_authenticate(token=token, now=utcnow(), count=client_count(request))
        return api_token.client, api_token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
