"""Query strings: only the parameters an operation documents, each once, in their ranges; anything else is a 400.

A misspelt filter (``?stat=filled``) would otherwise be ignored and return every order; lists take
``?limit=&offset=`` with a maximum page."""

from __future__ import annotations

from django.conf import settings
from rest_framework import pagination, serializers
from rest_framework.exceptions import ValidationError

MAX_OFFSET = 2**31 - 1
PAGE_PARAMS = ("limit", "offset")


def query_check(request, *allowed: str) -> None:
    """Refuse (``invalid_input``) query parameters other than ``allowed``, and one given more than once (read, its
    last value alone would count: ``?state=open&state=filled`` is not both)."""
    params = request.query_params
    if not params:
        return
    errors = {name: ["Unknown query parameter."] for name in set(params) - set(allowed)}
    errors.update((name, ["Given more than once."]) for name, values in params.lists()
                  if len(values) > 1 and name not in errors)
    if errors:
        raise ValidationError(dict(sorted(errors.items())))


def query_filters(request, serializer_class: type[serializers.Serializer], *, paginated: bool = True) -> dict:
    """The validated filters of a list: the serializer's fields (and the page's), nothing else. Read
    as a plain dict, not form data: DRF takes an empty form value for an absent one, and a filter
    given empty is refused."""
    query_check(request, *serializer_class().fields, *(PAGE_PARAMS if paginated else ()))
    filters = serializer_class(data=request.query_params.dict())
    filters.is_valid(raise_exception=True)
    return filters.validated_data


def int_param(request, name: str, low: int, high: int, default: int) -> int:
    """The query parameter ``name``: decimal digits only, from ``low`` to ``high`` (``invalid_input``
    otherwise); ``default`` when absent."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and low <= int(text) <= high):
        raise ValidationError({name: [f"An integer from {low} to {high}."]})
    return int(text)


def page_limit(request) -> int:
    """The ``limit`` of a cursor-paginated list: 1..CCP_PAGE_MAX, CCP_PAGE_DEFAULT when absent."""
    return int_param(request, "limit", 1, settings.CCP_PAGE_MAX, settings.CCP_PAGE_DEFAULT)


class Pagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination, strict: a limit outside 1..CCP_PAGE_MAX or an offset outside
    0..2^31-1 (or not a decimal integer) is an ``invalid_input`` error, not silently replaced (a
    huge one used to reach PostgreSQL as a bigint out of range)."""

    @property
    def default_limit(self) -> int:
        return settings.CCP_PAGE_DEFAULT

    @property
    def max_limit(self) -> int:
        return settings.CCP_PAGE_MAX

    def get_limit(self, request) -> int:
        return int_param(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request) -> int:
        return int_param(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_OFFSET)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters
