from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey
from rest_framework_simplejwt.token_blacklist import admin as token_admin
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from audit.actors import Actor
from audit.services import audit_record
from telemetry.agent_keys import agent_host_move, agent_notify
from telemetry.models import AgentHost, AgentKey, Endpoint, ProcessRecord, Snapshot
from voltaxe.admin_base import ReadOnlyAdmin

admin.site.site_header = "Voltaxe administration"
admin.site.site_title = admin.site.index_title = "Voltaxe"
admin.site.site_url = "/live-telemetry/"  # "View site" opens the Live Telemetry page

# One place for agent keys: the library's own "API keys" list carries no hosts and would be a second door.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class OutstandingTokenAdmin(token_admin.OutstandingTokenAdmin):
    """simplejwt keeps each refresh token in clear: the admin lists who holds one and when it expires, never the token."""

    exclude = ["token"]

    def get_readonly_fields(self, *args, **kwargs) -> list[str]:
        return [f for f in super().get_readonly_fields(*args, **kwargs) if f != "token"]


admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, OutstandingTokenAdmin)


class TelemetryAdmin(ReadOnlyAdmin):
    """Telemetry is what the agents saw: never edited by hand, though junk may be deleted."""

    allow_delete = True


class AgentHostInline(admin.TabularInline):
    """Hosts are added here; a host bound to another key is refused (move it from "Host bindings")."""

    model = AgentHost
    extra = 1
    readonly_fields = ["bound_at"]


@admin.register(AgentKey)
class AgentKeyAdmin(APIKeyModelAdmin):
    list_display = ["prefix", "name", "scope", "host_list", "created", "expiry_date", "_has_expired", "revoked"]
    list_filter = ["scope", "revoked", "created"]
    search_fields = ["name", "prefix", "hosts__hostname"]
    inlines = [AgentHostInline]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is None:  # a new key names its hosts, or is made a relay deliberately
            form.base_fields["scope"].initial = AgentKey.Scope.HOSTS
        return form

    @admin.display(description="hosts")
    def host_list(self, obj: AgentKey) -> str:
        if obj.scope == AgentKey.Scope.RELAY:
            return "any host (relay)"
        hosts = [h.hostname for h in obj.hosts.all()[:6]]
        return ", ".join(hosts[:5]) + (" …" if len(hosts) > 5 else "") or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("hosts")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Revoked, never deleted: what a key delivered stays attributed to it (late history is told by the key
        # that sent it, so a deleted key would make a stolen key's backdated month count as on time).
        return False

    def save_model(self, request, obj, form, change):
        created = not obj.pk
        super().save_model(request, obj, form, change)
        if created:
            audit_record(action="agent.created", request=request, resource_type="agent_key", resource_id=obj.prefix,
                         details={"name": obj.name, "scope": obj.scope, "via": "admin"})
        elif "revoked" in form.changed_data and obj.revoked:
            audit_record(action="agent.revoked", request=request, resource_type="agent_key", resource_id=obj.prefix,
                         details={"name": obj.name, "via": "admin"})
            agent_notify("agent.revoked", obj, request.user, [])

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change:  # its hosts are saved by now
            agent_notify("agent.created", form.instance, request.user, [h.hostname for h in form.instance.hosts.all()])


@admin.register(AgentHost)
class AgentHostAdmin(admin.ModelAdmin):
    """Moving a host to another key (a re-imaged machine) is changing its key here; each move is audited."""

    list_display = ["hostname", "key", "key_scope", "bound_at"]
    list_select_related = ["key"]
    search_fields = ["hostname", "key__name", "key__prefix"]
    raw_id_fields = ["key"]

    @admin.display(description="key scope")
    def key_scope(self, obj: AgentHost) -> str:
        return obj.key.get_scope_display()

    def get_readonly_fields(self, request, obj=None):
        return ["hostname", "bound_at"] if obj else ["bound_at"]

    def save_model(self, request, obj, form, change):
        if not change or "key" in form.changed_data:
            binding = agent_host_move(hostname=obj.hostname, key=obj.key, actor=Actor.from_request(request, "admin"))
            obj.pk, obj.bound_at = binding.pk, binding.bound_at
            if change:
                messages.info(request, f"{obj.hostname} now reports with key {obj.key.name!r}; the previous key was not revoked.")


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["hostname", "os", "names_only", "first_seen", "last_seen", "last_agent"]
    list_filter = ["os", "names_only"]
    search_fields = ["hostname"]
    readonly_fields = ["first_seen", "last_seen", "last_agent", "names_only"]


@admin.register(Snapshot)
class SnapshotAdmin(TelemetryAdmin):
    list_display = ["id", "endpoint", "timestamp", "source", "received_at", "process_count", "anomaly_count",
                    "model_number", "agent"]
    list_filter = ["source", "model_number", "endpoint__os"]
    search_fields = ["endpoint__hostname"]
    date_hierarchy = "timestamp"
    list_select_related = ["endpoint", "agent"]
    show_full_result_count = False


@admin.register(ProcessRecord)
class ProcessRecordAdmin(TelemetryAdmin):
    list_display = ["observed_at", "endpoint", "name", "pid", "parent_name", "username", "exe", "score", "flagged", "status",
                    "model_number"]
    list_filter = ["flagged", "status", "model_number"]
    search_fields = ["name", "name_norm", "exe", "endpoint__hostname"]
    date_hierarchy = "observed_at"
    list_select_related = ["endpoint"]
    raw_id_fields = ["snapshot", "endpoint"]
    # Counting a million rows on every page load is what makes admins slow.
    show_full_result_count = False
