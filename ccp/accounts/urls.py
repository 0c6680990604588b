from django.urls import path

from ccp.accounts.apis import (
    BalancesApi,
    MeApi,
    NonceApi,
    SignOutApi,
    StatementApi,
    StatementLinesApi,
    TokenApi,
)

urlpatterns = [
    path("auth/nonce", NonceApi.as_view(), name="auth-nonce"),
    path("auth/token", TokenApi.as_view(), name="auth-token"),
    path("auth/me", MeApi.as_view(), name="auth-me"),
    path("auth/signout", SignOutApi.as_view(), name="auth-signout"),
    path("balances", BalancesApi.as_view(), name="balances"),
    path("statement", StatementApi.as_view(), name="statement"),
    path("statement/lines", StatementLinesApi.as_view(), name="statement-lines"),
]
