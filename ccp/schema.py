"""OpenAPI: bearer tokens, and the one error shape ``{"code", "message", "extra"}`` on every operation."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ccp.accounts.authentication.ApiTokenAuthentication"
    name = "walletToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "API token from wallet sign-in: POST /api/v1/auth/nonce, then /api/v1/auth/token."}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "extra"],
    "properties": {
        "code": {"type": "string", "description": "stable machine-readable code, e.g. insufficient_collateral"},
        "message": {"type": "string", "description": "for people; may change"},
        "extra": {"type": "object", "additionalProperties": True,
                  "description": "details, e.g. {'fields': {...}} for invalid_input"},
    },
}

_ERRORS = {
    "400": "invalid input (invalid_input, invalid_number, malformed_request, nesting_too_deep, or a rule's code "
           "such as price_off_tick)",
    "401": "missing, unknown or expired token (not_authenticated, token_invalid, token_expired)",
    "404": "not found, or not yours (not_found, order_not_found)",
    "405": "method not allowed (method_not_allowed)",
    "406": "an Accept header application/json does not satisfy (not_acceptable)",
    "413": "request body over the limit (body_too_large)",
    "415": "a body that is not application/json (unsupported_media_type)",
    "429": "over a throttle (throttled): retry after the Retry-After header's seconds",
    "503": "the database cannot be reached (unavailable): nothing was changed, retry after Retry-After",
}


def error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: add the Error schema and the common error responses."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS.items():
                if code == "401" and operation.get("security") == [{}]:
                    continue  # public operation
                responses.setdefault(code, {"description": description, "content": ref})
            for code, response in responses.items():
                if code.startswith(("4", "5")) and "content" not in response:
                    response["content"] = ref
    return result
