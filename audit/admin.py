from django.contrib import admin

from audit.models import AuditEvent
from voltaxe.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The trail is evidence: nobody adds, edits or deletes it through the admin."""

    list_display = ["timestamp", "actor_name", "action", "outcome", "count", "last_seen", "resource_type", "resource_id",
                    "ip_address"]
    list_filter = ["outcome", "action", "resource_type"]
    search_fields = ["actor_name", "action", "resource_id", "ip_address"]
    date_hierarchy = "timestamp"
