from django.urls import path

from ccp.risk.apis import LockupsApi, PositionsApi

urlpatterns = [
    path("positions", PositionsApi.as_view(), name="positions"),
    path("lockups", LockupsApi.as_view(), name="lockups"),
]
