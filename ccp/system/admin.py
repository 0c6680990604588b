from django.contrib import admin

from ccp.clock import utcnow
from ccp.system.models import Edge, OperatorAlert
from ccp.system.services import alert_resolve


@admin.register(Edge)
class EdgeAdmin(admin.ModelAdmin):
    list_display = ["name", "at", "block_number", "updated_at"]
    search_fields = ["name"]

    # Edges are moved by the background loops only.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OperatorAlert)
class OperatorAlertAdmin(admin.ModelAdmin):
    """Open alerts first. Operators resolve an alert once they have dealt with it."""

    list_display = ["kind", "key", "message", "count", "raised_at", "updated_at", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["key", "message"]
    readonly_fields = ["key", "kind", "message", "count", "raised_at", "updated_at", "resolved_at"]
    actions = ["resolve"]

    @admin.action(description="Mark the selected alerts resolved")
    def resolve(self, request, queryset):
        now = utcnow()
        for alert in queryset.filter(resolved_at__isnull=True):
            alert_resolve(key=alert.key, now=now)
        self.message_user(request, "Resolved.")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
