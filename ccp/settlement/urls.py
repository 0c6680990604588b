from django.urls import path

from ccp.settlement.apis import WithdrawalsApi

urlpatterns = [path("withdrawals", WithdrawalsApi.as_view(), name="withdrawals")]
