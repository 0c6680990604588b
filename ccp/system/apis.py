from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.prices.selectors import spot_price_ages
from ccp.query import query_check
from ccp.system.models import Edge
from ccp.system.services import HEARTBEAT_EDGE


class HealthApi(APIView):
    """Liveness and readiness: the database answers; the last worker heartbeat, if any; whether every
    traded pair has a fresh spot price. Always 200 while it can answer: ``status`` is ``degraded``
    when prices are stale."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {"status": serializers.ChoiceField(choices=["ok", "degraded"]),
             "database": serializers.CharField(),
             "heartbeat_at": serializers.DateTimeField(allow_null=True),
             "prices": serializers.ChoiceField(
                 choices=["ok", "stale"],
                 help_text="stale: a pair with a listed or halted contract has no venue price younger than "
                           "CCP_SPOT_STALE_AFTER_SECONDS"),
             "prices_age_seconds": serializers.IntegerField(
                 allow_null=True, help_text="age of the oldest of the pairs' newest venue prices (null: none)"),
             "prices_stale_pairs": serializers.ListField(child=serializers.CharField(),
                                                         help_text="pairs without a fresh price")},
        )
    )
    def get(self, request):
        query_check(request)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        edge = Edge.objects.filter(name=HEARTBEAT_EDGE).first()
        ages = spot_price_ages(now=utcnow())
        stale = sorted(str(pair) for pair, age in ages.items() if age is None or age > settings.CCP_SPOT_STALE_AFTER)
        oldest = max((age for age in ages.values() if age is not None), default=None)
        return Response({"status": "degraded" if stale else "ok", "database": "ok",
                         "heartbeat_at": edge.at if edge else None, "prices": "stale" if stale else "ok",
                         "prices_age_seconds": None if oldest is None else int(oldest.total_seconds()),
                         "prices_stale_pairs": stale})


@csrf_exempt  # no cookie, no state: a POST got Django's CSRF refusal (403) instead of 405
@require_safe
def ping(request):
    """Bare Django JSON view: liveness without the database, and the intake benchmark's baseline. GET (and HEAD)
    only: other methods get 405 ``method_not_allowed``."""
    return JsonResponse({"status": "ok"})
