from django.urls import path

from ccp.perps.apis import PositionEstimateApi

urlpatterns = [
    path("positions/estimate", PositionEstimateApi.as_view(), name="position-estimate"),
]
