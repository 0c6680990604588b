from django.urls import path

from ccp.orders.apis import OrderBatchApi, OrderCancelApi, OrderDetailApi, OrderListSubmitApi
from ccp.orders.results import order_results_awaited

urlpatterns = [
    path("orders", order_results_awaited(OrderListSubmitApi.as_view()), name="order-list"),
    path("orders/batch", order_results_awaited(OrderBatchApi.as_view()), name="order-batch"),
    path("orders/<int:order_id>", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
]
