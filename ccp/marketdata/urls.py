from django.urls import path

from ccp.marketdata.apis import ContractCandlesApi, ContractStatsApi, StatsListApi

urlpatterns = [
    path("contracts/<symbol:symbol>/candles", ContractCandlesApi.as_view(), name="contract-candles"),
    path("contracts/<symbol:symbol>/stats", ContractStatsApi.as_view(), name="contract-stats"),
    path("stats", StatsListApi.as_view(), name="stats-list"),
]
