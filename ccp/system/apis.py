from django.db import connection
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.query import query_check
from ccp.system.models import Edge
from ccp.system.services import HEARTBEAT_EDGE


class HealthApi(APIView):
    """Liveness and readiness: the database answers; the last worker heartbeat, if any."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {"status": serializers.CharField(), "database": serializers.CharField(),
             "heartbeat_at": serializers.DateTimeField(allow_null=True)},
        )
    )
    def get(self, request):
        query_check(request)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        edge = Edge.objects.filter(name=HEARTBEAT_EDGE).first()
        return Response({"status": "ok", "database": "ok", "heartbeat_at": edge.at if edge else None})


def ping(request):
    """Bare Django JSON view: liveness without the database, and the intake benchmark's baseline."""
    return JsonResponse({"status": "ok"})
