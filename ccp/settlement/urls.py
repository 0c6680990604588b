from django.urls import path

from ccp.settlement.apis import ChainApi, WithdrawalsApi

urlpatterns = [
    path("chain", ChainApi.as_view(), name="chain"),
    path("withdrawals", WithdrawalsApi.as_view(), name="withdrawals"),
]
