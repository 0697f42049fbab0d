"""What telemetry's API takes and answers, for the OpenAPI schema only (the views build their bodies themselves).

Each shape follows ../shared/API.md; the fields beyond it are what the views answer today.
"""
from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from telemetry.events import MAX_EVENTS

PROCESS = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"}, "pid": {"type": "integer"}, "ppid": {"type": "integer"},
        "exe": {"type": "string"}, "username": {"type": "string"}, "cmdline": {"type": "string"},
        "cpu_percent": {"type": "number"}, "memory_rss": {"type": "integer"},
    },
}


@extend_schema_field({"oneOf": [PROCESS, {"type": "string", "description": "A process name (the legacy body)."}]})
class ProcessIn(serializers.JSONField):
    """A process: an object (the rich body) or its name alone (what the Voltaxe Sentinel sends)."""


class SnapshotIn(serializers.Serializer):
    hostname = serializers.CharField(max_length=255)
    timestamp = serializers.DateTimeField(help_text="When the snapshot was taken (RFC 3339); not far in the future.")
    os = serializers.CharField(required=False, help_text="linux, windows, macos… (guessed from the names when absent).")
    processes = serializers.ListField(child=ProcessIn(), help_text="At most MAX_PROCESSES_PER_SNAPSHOT (5000).")


class SnapshotAnomaly(serializers.Serializer):
    index = serializers.IntegerField(help_text="The position in the submitted `processes` list.")
    name = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField()
    reasons = serializers.ListField(child=serializers.CharField())


class SnapshotResult(serializers.Serializer):
    snapshot_id = serializers.IntegerField()
    hostname = serializers.CharField()
    processes = serializers.IntegerField(help_text="How many processes were stored.")
    model_version = serializers.IntegerField(allow_null=True, help_text="null while no model is active.")
    anomalies = SnapshotAnomaly(many=True)


class ItemErrorBody(serializers.Serializer):
    status = serializers.IntegerField(help_text="400, 403 or 409: what the single endpoint would have answered.")
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ItemError(serializers.Serializer):
    error = ItemErrorBody()


@extend_schema_field(PolymorphicProxySerializer(component_name="SnapshotOutcome", serializers=[SnapshotResult, ItemError],
                                                resource_type_field_name=None))
class SnapshotOutcome(serializers.JSONField):
    pass


class BatchResult(serializers.Serializer):
    results = serializers.ListField(child=SnapshotOutcome(), help_text="One per snapshot, in the order sent.")


class EventIn(serializers.Serializer):
    hostname = serializers.CharField(max_length=255)
    timestamp = serializers.DateTimeField(help_text="When the process started.")
    name = serializers.CharField()
    pid = serializers.IntegerField(required=False)
    ppid = serializers.IntegerField(required=False)
    exe = serializers.CharField(required=False)
    cmdline = serializers.CharField(required=False)
    username = serializers.CharField(required=False)
    parent_name = serializers.CharField(required=False)
    parent_exe = serializers.CharField(required=False)
    sha256 = serializers.CharField(required=False)


class EventAnomaly(serializers.Serializer):
    name = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField()
    reasons = serializers.ListField(child=serializers.CharField())
    key = serializers.CharField(help_text="The same key as a snapshot's observation of the same program.")


class EventResult(serializers.Serializer):
    event_id = serializers.IntegerField()
    hostname = serializers.CharField()
    model_version = serializers.IntegerField(allow_null=True)
    anomalies = EventAnomaly(many=True)


@extend_schema_field(PolymorphicProxySerializer(component_name="EventOutcome", serializers=[EventResult, ItemError],
                                                resource_type_field_name=None))
class EventOutcome(serializers.JSONField):
    pass


class EventsResult(serializers.Serializer):
    results = serializers.ListField(child=EventOutcome(), help_text=f"One per event (at most {MAX_EVENTS}), in order.")


class SysmonRecord(serializers.Serializer):
    """Sysmon event 1 (process creation); other event ids are counted and skipped."""

    EventID = serializers.IntegerField()
    UtcTime = serializers.CharField()
    Image = serializers.CharField()
    CommandLine = serializers.CharField(required=False)
    ParentImage = serializers.CharField(required=False)
    ProcessId = serializers.IntegerField(required=False)
    ParentProcessId = serializers.IntegerField(required=False)
    User = serializers.CharField(required=False)
    Hashes = serializers.CharField(required=False)
    Computer = serializers.CharField(required=False, help_text="The host (or Hostname).")
    Hostname = serializers.CharField(required=False)


# An ECS document as Winlogbeat and Elastic Agent ship it (nested objects or dotted names); `@timestamp` is no identifier.
EcsRecord = type(serializers.Serializer)("EcsRecord", (serializers.Serializer,), {
    "__module__": __name__,
    "@timestamp": serializers.DateTimeField(),
    "event": serializers.DictField(help_text="`code` (1 or 4688: a process start), `category`, `type`."),
    "host": serializers.DictField(help_text="`name`."),
    "process": serializers.DictField(help_text="`name`, `executable`, `command_line`, `pid`, `hash.sha256`, "
                                               "`parent.name`, `parent.executable`, `parent.pid`."),
    "user": serializers.DictField(required=False, help_text="`name`."),
})


PROCESS_START_RECORDS = PolymorphicProxySerializer(component_name="ProcessStartRecord", serializers=[SysmonRecord, EcsRecord],
                                                   resource_type_field_name=None, many=True)


class RecordRefused(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(required=False)
    detail = serializers.CharField()


class RecordResult(EventResult):
    index = serializers.IntegerField(help_text="The record's position in what was sent.")


class RecordsResult(serializers.Serializer):
    stored = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Records that are not process starts.")
    refused = RecordRefused(many=True)
    results = RecordResult(many=True)


class RecordsRefused(RecordsResult):
    """400 (or 403/409 when every record was refused alike): nothing could be used."""

    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class HostReportIn(serializers.Serializer):
    hostname = serializers.CharField(required=False, help_text="Or host_info.hostname.")
    os = serializers.CharField(required=False, help_text="Or platform / os_name, here or in host_info, host, system.")
    host_info = serializers.DictField(required=False)


class HostReportResult(serializers.Serializer):
    hostname = serializers.CharField()
    os = serializers.CharField(allow_null=True)
    used = serializers.ListField(child=serializers.CharField(), help_text='["os"], or [] when nothing was used.')
    detail = serializers.CharField()


class RecentSnapshot(serializers.Serializer):
    id = serializers.IntegerField()
    hostname = serializers.CharField()
    timestamp = serializers.DateTimeField()
    process_count = serializers.IntegerField()
    anomaly_count = serializers.IntegerField()
    scored = serializers.BooleanField()
    model_version = serializers.IntegerField(allow_null=True)
    names_only = serializers.BooleanField()


class Summary(serializers.Serializer):
    total_records = serializers.IntegerField()
    unique_processes = serializers.IntegerField(help_text="Distinct programs in the last 24 hours.")
    unique_hosts = serializers.IntegerField()
    hours_collected = serializers.FloatField()
    collection_rate_per_hour = serializers.IntegerField(help_text="Records taken in the last hour.")
    recent_snapshots = RecentSnapshot(many=True, help_text="Newest first.")
    names_only_hosts = serializers.ListField(child=serializers.CharField())
    open_anomalies = serializers.IntegerField()


class Anomaly(serializers.Serializer):
    id = serializers.IntegerField()
    hostname = serializers.CharField()
    timestamp = serializers.DateTimeField()
    name = serializers.CharField()
    exe = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    parent = serializers.CharField()
    username = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())
    model_version = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()


class AnomalyPage(serializers.Serializer):
    results = Anomaly(many=True, help_text="Newest first.")
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class Host(serializers.Serializer):
    hostname = serializers.CharField()
    os = serializers.CharField()
    agent = serializers.CharField(allow_null=True, help_text="The agent key's name (never the key).")
    names_only = serializers.BooleanField()
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    last_heard = serializers.DateTimeField(allow_null=True, help_text="When the server last received from it.")
    usual_interval_seconds = serializers.FloatField(allow_null=True)
    late = serializers.BooleanField(help_text="Nothing came for three times its usual interval.")
    late_since = serializers.DateTimeField(allow_null=True)
    open_alerts = serializers.IntegerField()


class HostPage(serializers.Serializer):
    total = serializers.IntegerField()
    results = Host(many=True, help_text="By host name.")


class LastSnapshotProcess(serializers.Serializer):
    name = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    ppid = serializers.IntegerField(allow_null=True)
    exe = serializers.CharField()
    user = serializers.CharField()
    cmdline = serializers.CharField()
    parent = serializers.CharField()
    flagged = serializers.BooleanField()
    score = serializers.FloatField(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())


class LastSnapshot(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    received_at = serializers.DateTimeField(allow_null=True)
    model_version = serializers.IntegerField(allow_null=True)
    processes = LastSnapshotProcess(many=True, help_text="In the order the agent listed them.")


class HostDetail(Host):
    last_snapshot = LastSnapshot(allow_null=True)
