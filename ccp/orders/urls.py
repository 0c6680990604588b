from django.urls import path

from ccp.orders.apis import (
    OrderBatchApi,
    OrderCancelAllApi,
    OrderCancelApi,
    OrderDetailApi,
    OrderListSubmitApi,
    OrderModifyApi,
    PositionCloseApi,
)
from ccp.orders.results import order_results_awaited

urlpatterns = [
    path("orders", order_results_awaited(OrderListSubmitApi.as_view()), name="order-list"),
    path("orders/batch", order_results_awaited(OrderBatchApi.as_view()), name="order-batch"),
    path("orders/<int:order_id>", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<int:order_id>/modify", order_results_awaited(OrderModifyApi.as_view()), name="order-modify"),
    path("orders/cancel-all", OrderCancelAllApi.as_view(), name="order-cancel-all"),
    path("orders/close", order_results_awaited(PositionCloseApi.as_view()), name="position-close"),
]
