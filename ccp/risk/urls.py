from django.urls import path

from ccp.orders.results import order_results_awaited
from ccp.risk.apis import LockupsApi, PerpPositionCloseApi, PositionMarginApi, PositionsApi, PositionTpSlApi

urlpatterns = [
    path("positions", order_results_awaited(PositionsApi.as_view()), name="positions"),
    path("positions/close", order_results_awaited(PerpPositionCloseApi.as_view()), name="position-close"),
    path("positions/margin", PositionMarginApi.as_view(), name="position-margin"),
    path("positions/tpsl", order_results_awaited(PositionTpSlApi.as_view()), name="position-tpsl"),
    path("lockups", LockupsApi.as_view(), name="lockups"),
]
