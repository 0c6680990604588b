from django.urls import path

from ccp.contracts.apis import BookApi, ContractDetailApi, ContractListApi

urlpatterns = [
    path("contracts", ContractListApi.as_view(), name="contract-list"),
    path("contracts/<symbol:symbol>", ContractDetailApi.as_view(), name="contract-detail"),
    path("contracts/<symbol:symbol>/book", BookApi.as_view(), name="contract-book"),
]
