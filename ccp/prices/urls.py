from django.urls import path

from ccp.prices.apis import IndexApi

urlpatterns = [path("index", IndexApi.as_view(), name="index")]
