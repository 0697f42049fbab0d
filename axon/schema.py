"""What axon's API answers, for the OpenAPI schema only (axon/api.py builds the bodies; axon/serializers.py reads them)."""
from __future__ import annotations

from rest_framework import serializers

from axon.models import Alert, TrainingRun

LOW_HIGH = ["low", "high"]
RETRAIN_STATUSES = ["training_started", "already_running"]


def texts(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), **kwargs)


class AlertOut(serializers.Serializer):
    """Anomalies grouped by approval key (host, name, path, parent and, for an interpreter, its script)."""

    key = serializers.CharField(help_text="Opaque to clients.")
    hostname = serializers.CharField()
    name = serializers.CharField()
    exe = serializers.CharField()
    parent = serializers.CharField()
    user = serializers.CharField()
    script = serializers.CharField(allow_null=True, help_text="An interpreter's script or the arguments that make the key "
                                                              "unique, else null.")
    count = serializers.IntegerField(help_text="Observations.")
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    max_score = serializers.FloatField(allow_null=True)
    severity = serializers.ChoiceField(["low", "medium", "high"], allow_null=True)
    severity_reasons = texts()
    reasons = texts(help_text="Why the model flagged it.")
    risk = serializers.ChoiceField(LOW_HIGH)
    risk_reasons = texts()
    status = serializers.ChoiceField(Alert.Status.choices)
    note = serializers.CharField(allow_blank=True)
    updated_by = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    reopened = serializers.BooleanField(help_text="Closed, then flagged again.")


class FloodOut(serializers.Serializer):
    key = serializers.CharField(help_text="Triaged like an alert's key.")
    hostname = serializers.CharField()
    programs = serializers.IntegerField(help_text="New programs (alert groups) from this host, listed one by one "
                                                  "only when the host is asked for by name.")
    observations = serializers.IntegerField()
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    arrived_seconds = serializers.FloatField(help_text="From the first of its records to arrive to the last.")
    status = serializers.CharField()
    reopened = serializers.BooleanField()
    summary = serializers.CharField()


class AlertPage(serializers.Serializer):
    total = serializers.IntegerField()
    results = AlertOut(many=True)
    floods = FloodOut(many=True, help_text="Hosts with more new programs than one host may put in front of people "
                                           "(HOST_NEW_PROGRAMS_BUDGET): one line each, not in `results` or `total`.")
    next = serializers.URLField(allow_null=True)


class Observation(serializers.Serializer):
    timestamp = serializers.DateTimeField()
    pid = serializers.IntegerField(allow_null=True)
    ppid = serializers.IntegerField(allow_null=True)
    parent = serializers.CharField()
    cmdline = serializers.CharField()
    cpu_percent = serializers.FloatField(allow_null=True)
    memory_rss = serializers.IntegerField(allow_null=True)
    model_version = serializers.IntegerField(allow_null=True)
    source = serializers.ChoiceField(["snapshot", "event"])


class AlertChange(serializers.Serializer):
    status = serializers.ChoiceField(Alert.Status.choices)
    note = serializers.CharField(allow_blank=True)
    by = serializers.CharField()
    at = serializers.DateTimeField()


class ApprovalOut(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    created_at = serializers.DateTimeField()
    approved_by = serializers.CharField()
    hostname = serializers.CharField()
    name = serializers.CharField()
    exe = serializers.CharField()
    parent = serializers.CharField()
    script = serializers.CharField(allow_null=True)
    observations = serializers.IntegerField()
    first_seen = serializers.DateTimeField(allow_null=True)
    run_id = serializers.IntegerField(allow_null=True)


class AlertDetail(AlertOut):
    observations = Observation(many=True, help_text="Newest first, paged with offset and limit.")
    history = AlertChange(many=True, help_text="Every triage change.")
    approval = ApprovalOut(allow_null=True, help_text="The approval covering it, or null.")
    next = serializers.URLField(allow_null=True, help_text="The next page of observations.")


class Triaged(serializers.Serializer):
    results = AlertOut(many=True, help_text="The alerts as they are now.")


class ApprovalPage(serializers.Serializer):
    results = ApprovalOut(many=True)
    next = serializers.URLField(allow_null=True)


class Revoked(ApprovalOut):
    revoked = serializers.BooleanField()
    detail = serializers.CharField()


class PreviewItem(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    exe = serializers.CharField()
    parent = serializers.CharField()
    script = serializers.CharField(allow_blank=True)
    user = serializers.CharField()
    hostnames = texts()
    observations = serializers.IntegerField()
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    reasons = texts(help_text="Why it was flagged.")
    risk = serializers.ChoiceField(LOW_HIGH)
    risk_reasons = texts()
    default = serializers.BooleanField(help_text="Ticked by default: never a high-risk or acknowledged item.")
    held_reasons = texts(help_text="Why a low-risk item is not ticked by default.")
    note = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(Alert.Status.choices)


class Preview(serializers.Serializer):
    as_of = serializers.DateTimeField()
    total = serializers.IntegerField(help_text="Every candidate, also those past this page.")
    will_learn = PreviewItem(many=True)
    floods = FloodOut(many=True, help_text="Hosts whose new programs are past the per-host budget: one line each, "
                                           "their programs not in `will_learn` (ask with `hostname` to list them).")
    active_model = serializers.IntegerField(allow_null=True)
    next = serializers.URLField(allow_null=True)


class RetrainAnswer(serializers.Serializer):
    status = serializers.ChoiceField(RETRAIN_STATUSES)
    message = serializers.CharField()
    estimated_completion = serializers.CharField()
    triggered_by = serializers.CharField(help_text="The user's e-mail, or the username where there is none.")
    timestamp = serializers.DateTimeField()
    note = serializers.CharField()
    run_id = serializers.IntegerField()
    status_url = serializers.CharField()


class ApprovedItem(serializers.Serializer):
    key = serializers.CharField()
    hostname = serializers.CharField()
    name = serializers.CharField()
    exe = serializers.CharField()
    parent = serializers.CharField()
    script = serializers.CharField(allow_null=True)


class Run(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(TrainingRun.Status.choices)
    stage = serializers.CharField(allow_blank=True)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    trigger = serializers.ChoiceField(TrainingRun.Trigger.values)
    triggered_by = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    exclude = texts()
    approved = ApprovedItem(many=True, help_text="Exactly what this run approved.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    model_version = serializers.IntegerField(allow_null=True)


class RunDetail(Run):
    log = serializers.CharField(allow_blank=True)


class RunPage(serializers.Serializer):
    results = Run(many=True, help_text="Newest first.")


class ActiveModel(serializers.Serializer):
    version = serializers.IntegerField()
    trained_at = serializers.DateTimeField()
    records = serializers.IntegerField()
    processes = serializers.IntegerField()
    hosts = serializers.IntegerField()
    flag_rate = serializers.FloatField(allow_null=True)


class Status(serializers.Serializer):
    active_model = ActiveModel(allow_null=True)
    serving_version = serializers.IntegerField(allow_null=True, help_text="The version this process scores with.")
    model_error = serializers.CharField(allow_null=True, allow_blank=True, help_text="Why the active model cannot score.")
    current_run = Run(allow_null=True)
    last_run = Run(allow_null=True)
    worker_alive = serializers.BooleanField()
    estimate_seconds = serializers.IntegerField()


class ModelVersionOut(serializers.Serializer):
    version = serializers.IntegerField()
    status = serializers.CharField()
    is_active = serializers.BooleanField()
    trained_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    data_until = serializers.DateTimeField(allow_null=True)
    records = serializers.IntegerField()
    processes = serializers.IntegerField()
    hosts = serializers.IntegerField()
    flag_rate = serializers.FloatField(allow_null=True)
    metrics = serializers.DictField(help_text="Training figures, by name.")
    parameters = serializers.DictField(help_text="The detector's parameters, by name.")
    feature_version = serializers.IntegerField()
    feature_names = texts()
    sklearn_version = serializers.CharField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    training_seconds = serializers.FloatField()
    gate_reason = serializers.CharField(allow_blank=True)
    run_id = serializers.IntegerField(allow_null=True)


class ModelPage(serializers.Serializer):
    results = ModelVersionOut(many=True, help_text="Newest first.")
