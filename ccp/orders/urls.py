from django.urls import path

from ccp.orders.apis import OrderCancelApi, OrderDetailApi, OrderListSubmitApi
from ccp.orders.results import order_results_awaited

urlpatterns = [
    path("orders", order_results_awaited(OrderListSubmitApi.as_view()), name="order-list"),
    path("orders/<int:order_id>", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
]
