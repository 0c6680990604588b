from django.contrib import admin

from ccp.system.models import Edge


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
