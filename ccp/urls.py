from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import ccp.converters  # noqa: F401  (registers <symbol:...>)
from ccp.system.admin import health_view
from ccp.system.apis import HealthApi, ping

# Order entry's include first: Django tries the patterns in order, and each include before the one that matches
# costs a failed walk of all its patterns (no two includes match one path, so the order changes nothing else).
api_v1 = [
    path("health", HealthApi.as_view(), name="health"),
    path("ping", ping, name="ping"),
    path("", include("ccp.orders.urls")),
    path("", include("ccp.accounts.urls")),
    path("", include("ccp.contracts.urls")),
    path("", include("ccp.clearing.urls")),
    path("", include("ccp.marketdata.urls")),
    path("", include("ccp.risk.urls")),
    path("", include("ccp.perps.urls")),
    path("", include("ccp.settlement.urls")),
    path("", include("ccp.prices.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: its page renders from a template only GET names, so an OPTIONS (DRF's metadata) was a 500
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]), name="docs"),
]

urlpatterns = [
    path("admin/health/", admin.site.admin_view(health_view), name="admin_health"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
]

admin.site.site_header = "ccp clearing house"
admin.site.site_title = "ccp webconsole"
admin.site.index_title = "Operations"
admin.site.index_template = "admin/ccp_index.html"  # the index with a link to the health page

# Errors no view answered (no route, a crash) in the API's one error shape.
handler400 = "ccp.errors.handler400"
handler403 = "ccp.errors.handler403"
handler404 = "ccp.errors.handler404"
handler500 = "ccp.errors.handler500"
