from django.urls import path

from ccp.orders.results import order_results_awaited
from ccp.risk.apis import LockupsApi, PositionsApi

urlpatterns = [
    path("positions", order_results_awaited(PositionsApi.as_view()), name="positions"),
    path("lockups", LockupsApi.as_view(), name="lockups"),
]
