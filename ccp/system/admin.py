from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse

from ccp.clock import utcnow
from ccp.errors import ApplicationError
from ccp.system.invariants import invariants_chain, invariants_check
from ccp.system.models import Edge, OperatorAlert
from ccp.system.services import alert_resolve, edge_rewind

HEALTH_VIOLATIONS_SHOWN = 100  # per check on the health page; the rest are counted


def health_view(request):
    """The invariants (``manage.py ccp_check``) on one snapshot of the database; with ``?chain=1`` (its
    button, shown when a chain is configured) against the chain too. Read-only; staff only through
    ``admin_site.admin_view``. A chain that does not answer is said on the page, with the database's
    checks."""
    chain = invariants_chain()
    with_chain = chain is not None and request.GET.get("chain") == "1"
    error = None
    try:
        report = invariants_check(chain=chain if with_chain else None)
    except OSError as exc:  # requests' connection errors are OSErrors too
        error = f"Could not read the chain at {settings.CCP_CHAIN_URL}: {exc}"
        with_chain, report = False, invariants_check()
    checks = [(name, found[:HEALTH_VIOLATIONS_SHOWN], max(len(found) - HEALTH_VIOLATIONS_SHOWN, 0))
              for name, found in report.by_check().items()]
    context = {**admin.site.each_context(request), "title": "Health: invariants", "report": report,
               "checks": checks, "checked_at": utcnow(), "chain_configured": chain is not None,
               "with_chain": with_chain, "error": error}
    return TemplateResponse(request, "admin/system/health.html", context)


class EdgeRewindForm(forms.Form):
    block_number = forms.IntegerField(required=False, min_value=0, label="Back to block",
                                      help_text="the loop reads again from the block after this one")
    blocks_back = forms.IntegerField(required=False, min_value=1, label="Or this many blocks back")

    def __init__(self, *args, edge: Edge, **kwargs):
        super().__init__(*args, **kwargs)
        self.edge = edge

    def clean(self):
        data = super().clean()
        block, back = data.get("block_number"), data.get("blocks_back")
        if (block is None) == (back is None):
            raise forms.ValidationError("Give either a block or a number of blocks back.")
        data["target"] = block if block is not None else max(self.edge.block_number - back, 0)
        return data


@admin.register(Edge)
class EdgeAdmin(admin.ModelAdmin):
    list_display = ["name", "at", "block_number", "updated_at"]
    search_fields = ["name"]
    actions = ["rewind"]

    @admin.action(description="Move the edge back (read those blocks again)", permissions=["rewind"])
    def rewind(self, request, queryset):
        """After a reorganisation or a node that lost blocks: an intermediate page asks how far back."""
        edges = list(queryset.exclude(block_number=None))
        if len(edges) != 1:
            self.message_user(request, "Select one edge of blocks.", messages.ERROR)
            return None
        edge = edges[0]
        form = EdgeRewindForm(request.POST if "apply" in request.POST else None, edge=edge)
        if form.is_valid():
            try:
                edge = edge_rewind(name=edge.name, block_number=form.cleaned_data["target"], now=utcnow())
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"{edge.name} moved back to block {edge.block_number}; it reads again "
                                           "from the next block (what it already credited is not credited twice).")
                return None
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "edge": edge, "form": form,
                   "title": f"Move {edge.name} back", "action_checkbox_name": ACTION_CHECKBOX_NAME}
        return TemplateResponse(request, "admin/system/edge/rewind.html", context)

    def has_rewind_permission(self, request):
        return request.user.is_superuser

    # Edges are moved forward by the background loops only.
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
