from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from voltaxe.admin_base import ReadOnlyAdmin


class TelemetryAdmin(ReadOnlyAdmin):
    """Telemetry is what the agents saw: never edited by hand, though junk may be deleted."""

    allow_delete = True


@admin.register(AgentKey)
class AgentKeyAdmin(APIKeyModelAdmin):
    list_display = [*APIKeyModelAdmin.list_display]
    search_fields = ["name", "prefix"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["hostname", "os", "first_seen", "last_seen", "last_agent"]
    list_filter = ["os"]
    search_fields = ["hostname"]
    readonly_fields = ["first_seen", "last_seen", "last_agent"]


@admin.register(Snapshot)
class SnapshotAdmin(TelemetryAdmin):
    list_display = ["id", "endpoint", "timestamp", "received_at", "process_count", "anomaly_count", "model_version", "scored"]
    list_filter = ["scored", "model_version", "endpoint__os"]
    search_fields = ["endpoint__hostname"]
    date_hierarchy = "timestamp"
    list_select_related = ["endpoint"]
    show_full_result_count = False


@admin.register(ProcessRecord)
class ProcessRecordAdmin(TelemetryAdmin):
    list_display = ["observed_at", "endpoint", "name", "pid", "parent_name", "username", "exe", "score", "flagged", "status",
                    "model_version"]
    list_filter = ["flagged", "status", "model_version"]
    search_fields = ["name", "name_norm", "exe", "endpoint__hostname"]
    date_hierarchy = "observed_at"
    list_select_related = ["endpoint"]
    raw_id_fields = ["snapshot", "endpoint"]
    # Counting a million rows on every page load is what makes admins slow.
    show_full_result_count = False
