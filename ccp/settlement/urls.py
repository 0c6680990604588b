from django.urls import path

from ccp.settlement.apis import ChainApi, FaucetApi, WithdrawalsApi

urlpatterns = [
    path("chain", ChainApi.as_view(), name="chain"),
    path("faucet", FaucetApi.as_view(), name="faucet"),
    path("withdrawals", WithdrawalsApi.as_view(), name="withdrawals"),
]
