from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class TrainingRun(models.Model):
    """One press of the panic button (or a scheduled or command retrain), written by the task itself."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        TIMED_OUT = "timed_out", "timed out"
        REJECTED = "rejected"

    class Trigger(models.TextChoices):
        DASHBOARD = "dashboard"
        API = "api"
        ADMIN = "admin"
        COMMAND = "command"
        SCHEDULE = "schedule"

    class Stage(models.TextChoices):
        QUEUED = "queued"
        STARTING = "starting"
        APPROVING = "approving"
        AGGREGATING = "aggregating"
        TRAINING = "training"
        EVALUATING = "evaluating"
        SAVING = "saving"
        ACTIVATING = "activating"
        RESCORING = "rescoring"
        DONE = "done"
        FAILED = "failed"
        TIMED_OUT = "timed_out", "timed out"
        REJECTED = "rejected"

    IN_FLIGHT = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # Constant; with the partial unique constraint below it admits one run in flight.
    slot = models.CharField(max_length=16, default="retrain", editable=False)
    stage = models.CharField(max_length=64, choices=Stage.choices, default=Stage.QUEUED, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    triggered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    triggered_by_name = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    exclude = models.JSONField(default=list, blank=True)
    approve = models.BooleanField(
        default=True, help_text="Whether the run approves what was flagged (a person's press) or not (schedule).")
    # Fixed when the person pressed, not when the worker runs: [{key, hostname, name, exe, parent}, ...].
    approved = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    log = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    model_version = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot"], condition=Q(status__in=["queued", "running"]), name="one_training_run_in_flight"
            ),
        ]
        permissions = [("trigger_retrain", "Can trigger a model retrain (panic button)")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    # The lifecycle, queued → running → succeeded / failed / timed out / rejected: every write of the
    # status is here, each one UPDATE guarded by the status it expects, so two writers cannot both win.

    def _set(self, *, only_from=None, **values) -> bool:
        rows = TrainingRun.objects.filter(pk=self.pk)
        if only_from is not None:
            rows = rows.filter(status__in=only_from)
        changed = bool(rows.update(**values))
        if changed:
            self.refresh_from_db()
        return changed

    def claim(self) -> bool:
        """The worker takes a queued run; False if it was not queued (another worker has it, or it ended)."""
        now = timezone.now()
        return self._set(only_from=[self.Status.QUEUED], status=self.Status.RUNNING, started_at=now, heartbeat_at=now,
                         stage=self.Stage.STARTING, progress=2, message="Training…")

    def report_progress(self, stage: str, progress: int, log: str) -> None:
        self._set(stage=stage, progress=progress, heartbeat_at=timezone.now(), log=log)

    def beat(self) -> None:
        """Alive: lets the reaper tell a killed worker's run from a slow one."""
        TrainingRun.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(heartbeat_at=timezone.now())

    def queued_as(self, task_id: str) -> None:
        TrainingRun.objects.filter(pk=self.pk).update(task_id=task_id)

    def finish(self, status: str, message: str, *, only_from=None, log: str | None = None,
               version: ModelVersion | None = None) -> bool:
        """End the run with `status`; with `only_from`, only if it is still in one of those statuses."""
        values: dict = {"status": status, "finished_at": timezone.now(), "message": message,
                        "stage": self.Stage.DONE if status == self.Status.SUCCEEDED else status}
        if status == self.Status.SUCCEEDED:
            values["progress"] = 100
        if log is not None:
            values["log"] = log
        if version is not None:
            values["model_version"] = version
        return self._set(only_from=only_from, **values)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RetrainPress(models.Model):
    """A press that went through: it started the run or joined the one in flight. Written with the press itself,
    so the per-user rate limit counts every one, whatever became of its audit event."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="presses")
    joined = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="retrain_press_user_time")]

    def __str__(self) -> str:
        return f"press of run {self.run_id} by user {self.user_id}"


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"
        HELD = "held", "held by the promotion gate"

    version = models.PositiveIntegerField(unique=True)
    is_active = models.BooleanField(default=False)
    trained_at = models.DateTimeField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    data_until = models.DateTimeField(null=True, blank=True, help_text="Newest snapshot time the model learned from.")
    records = models.PositiveBigIntegerField()
    processes = models.PositiveIntegerField()
    hosts = models.PositiveIntegerField()
    feature_version = models.PositiveIntegerField()
    feature_names = models.JSONField(default=list)
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    sklearn_version = models.CharField(max_length=32)
    artifact_path = models.CharField(max_length=512, help_text="Relative to MODEL_STORE_DIR.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(default=0)
    training_seconds = models.FloatField(default=0)
    gate_reason = models.TextField(blank=True)
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]
        permissions = [("activate_modelversion", "Can activate (roll back to) a model version")]

    def __str__(self) -> str:
        return f"v{self.version}"

    @property
    def status(self) -> str:
        """Derived (one fact, one field): held = kept back by the gate and never activated."""
        if self.is_active:
            return self.Status.ACTIVE
        return self.Status.HELD if self.gate_reason and self.activated_at is None else self.Status.RETIRED


class Approval(models.Model):
    """A process a person approved as ordinary with the panic button; every later training honours it."""

    created_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    approved_by_name = models.CharField(max_length=255, blank=True)
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="approvals")
    hostname = models.CharField(max_length=255)
    name = models.CharField(max_length=255, help_text="Normalized process name.")
    exe = models.CharField(max_length=2048, blank=True, help_text="Normalized path.")
    parent = models.CharField(max_length=255, blank=True)
    # For an interpreter, the script it runs is part of what was approved ("" = run without one).
    # NULL: approved before scripts were told apart; it keeps meaning what it meant then (this
    # name, path and parent, whatever the script), until revoked.
    script = models.CharField(max_length=512, null=True, blank=True)  # noqa: DJ001 (NULL: not known, as above)
    observations = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["hostname", "name", "exe", "parent", "script"], name="approval_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.hostname}"


class ModelArtifact(models.Model):
    """The serialized model of a version, shared by every app host; local files are only a cache of it."""

    model_version = models.OneToOneField(ModelVersion, primary_key=True, on_delete=models.CASCADE, related_name="artifact")
    # Kept apart from ModelVersion so that listing versions never reads the model bytes.
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"artifact of {self.model_version}"


class Alert(models.Model):
    """A person's verdict on one approval key (host, name, path, parent): the anomalies under it share it."""

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        MALICIOUS = "malicious", "malicious: never offered, never approved"
        CLOSED = "closed", "closed: hidden, teaches nothing"

    # Statuses a press may never learn.
    NOT_LEARNABLE = (Status.MALICIOUS, Status.CLOSED)

    key = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    name = models.CharField(max_length=255, help_text="Normalized process name.")
    exe = models.CharField(max_length=2048, blank=True, help_text="Normalized path.")
    parent = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    note = models.TextField(blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_by_name = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The newest flagged record of the key when it was triaged: flagged again after it was
    # closed (by arrival, not by the timestamp an agent chose), it is open again.
    seen_up_to = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        permissions = [("triage_alert", "Can triage alerts (acknowledge, mark malicious, close)"),
                       ("overrule_alert", "Can clear a malicious verdict and close a high-risk alert")]

    def __str__(self) -> str:
        return f"{self.name} on {self.hostname}: {self.status}"


class AlertChange(models.Model):
    """One triage change of an alert, kept for its history: written with the change, in the same transaction."""

    key = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Alert.Status.choices)
    note = models.TextField(blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    by_name = models.CharField(max_length=255, blank=True)  # kept when the user is gone
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.key}: {self.status} by {self.by_name}"
