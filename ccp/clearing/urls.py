from django.urls import path

from ccp.clearing.apis import ContractTradesApi, FillsApi

urlpatterns = [
    path("fills", FillsApi.as_view(), name="fill-list"),
    path("contracts/<symbol:symbol>/trades", ContractTradesApi.as_view(), name="contract-trades"),
]
