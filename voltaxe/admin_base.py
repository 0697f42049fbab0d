"""What the admin classes share."""
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the product itself (telemetry, runs, versions, the audit trail) are looked at, not edited."""

    allow_delete = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.allow_delete and super().has_delete_permission(request, obj)
