"""Axon services: the panic button, training runs, model versions, approvals and re-scoring.

The API, the page, the admin action, the management command and the django-q2
tasks all call these functions; none of them holds logic of its own.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import sklearn
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, FloatField, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import actor_name, audit_record
from axon.models import Approval, ModelArtifact, ModelVersion, TrainingRun
from axon.scoring import Observation, model_cache, score_with
from axon.store import artifact_load, artifact_write
from telemetry.models import Endpoint, ProcessRecord, Snapshot
from telemetry.normalize import normalize_name
from voltaxe.ratelimits import rate_limit_hit

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
RECENT_EVAL_HOURS = 24
RECENT_EVAL_LIMIT = 50_000
# A candidate that flags this much more of recent ordinary data than the active model is held back.
GATE_ABSOLUTE = 0.005
GATE_RELATIVE = 2.0


class RateLimited(Exception):
    def __init__(self, retry_after: int, scope: str):
        self.retry_after = retry_after
        self.scope = scope
        who = "you have pressed" if scope == "user" else "the team has pressed"
        super().__init__(
            f"Retrain limit reached: {who} the panic button too often. Try again in {retry_after} seconds."
        )


class RunTimedOut(Exception):
    pass


@dataclass
class RetrainOutcome:
    run: TrainingRun
    started: bool  # False: joined the run already in flight

    @property
    def status(self) -> str:
        return "training_started" if self.started else "already_running"


# --- the press ----------------------------------------------------------------------


def retrain_estimate_seconds() -> int:
    """How long a run takes, from the last few that finished (20 s before there are any); cached briefly."""
    from django.core.cache import cache

    return cache.get_or_set("axon:retrain-estimate", _estimate, 30) or 20


def _estimate() -> int:
    recent = list(
        TrainingRun.objects.filter(status=Status.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")[:5].values_list("started_at", "finished_at")
    )
    if not recent:
        return 20
    seconds = sorted((end - start).total_seconds() for start, end in recent if start and end)[len(recent) // 2]
    return max(5, int(round(seconds + 2)))


def retrain_request(
    *, user=None, trigger: str, reason: str = "", exclude: list[str] | tuple = (), request=None, enqueue: bool = True
) -> RetrainOutcome:
    """Record a press and queue the run, or join the one in flight.

    With a request (API, page, admin), the per-user and global rate limits apply
    and raise RateLimited. A scheduled retrain (no user) approves nothing.
    """
    exclude = sorted({name.strip() for name in exclude if name and name.strip()})
    details = {"trigger": trigger, "reason": reason, "exclude": exclude}
    if request is not None:
        for scope, rate, key in (("user", settings.RETRAIN_USER_RATE, "user"), ("global", settings.RETRAIN_GLOBAL_RATE, "all")):
            wait = rate_limit_hit(request, group=f"axon.retrain.{scope}", rate=rate, key=key)
            if wait is not None:
                audit_record(action="retrain.rate_limited", actor=user, request=request, resource_type="training_run",
                             outcome=AuditEvent.Outcome.DENIED, details={**details, "scope": scope, "retry_after": wait})
                raise RateLimited(wait, scope)
    # Most presses during a run join it: one read answers them, and only then is it worth
    # checking whether that run's worker died.
    in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    if in_flight is not None and runs_reap():
        in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    if in_flight is not None:
        audit_record(action="retrain.joined", actor=user, request=request, resource_type="training_run",
                     resource_id=in_flight.pk, details=details)
        return RetrainOutcome(run=in_flight, started=False)
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=trigger, triggered_by=user if getattr(user, "pk", None) else None,
                triggered_by_name=actor_name(user) or ("scheduler" if trigger == TrainingRun.Trigger.SCHEDULE else ""),
                reason=reason, exclude=exclude, approve=trigger != TrainingRun.Trigger.SCHEDULE,
                stage="queued", message="Waiting for a worker.",
            )
    except IntegrityError:
        running = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
        if running is None:  # it finished between our insert and this read; press again
            return retrain_request(user=user, trigger=trigger, reason=reason, exclude=exclude, request=None, enqueue=enqueue)
        audit_record(action="retrain.joined", actor=user, request=request, resource_type="training_run",
                     resource_id=running.pk, details=details)
        return RetrainOutcome(run=running, started=False)
    audit_record(action="retrain.started", actor=user, request=request, resource_type="training_run",
                 resource_id=run.pk, details=details)
    if enqueue:
        _enqueue(run)
    return RetrainOutcome(run=run, started=True)


def _enqueue(run: TrainingRun) -> None:
    from django_q.tasks import async_task

    def send() -> None:
        try:
            task_id = async_task("axon.tasks.retrain_task", run.pk, task_name=f"retrain-run-{run.pk}")
        except Exception as exc:  # the broker is down: say so now instead of leaving a run nobody will pick up
            logger.exception("Could not queue run %s", run.pk)
            message = f"The run could not be queued ({exc.__class__.__name__}: {exc}). The previous model keeps serving."
            if TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
                status=Status.FAILED, finished_at=timezone.now(), message=message, stage="failed"
            ):
                audit_record(action="retrain.failed", actor=run.triggered_by, resource_type="training_run",
                             resource_id=run.pk, outcome=AuditEvent.Outcome.FAILURE, details={"message": message})
            return
        TrainingRun.objects.filter(pk=run.pk).update(task_id=str(task_id or ""))

    transaction.on_commit(send)


# --- the run (in the worker) ---------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Marks the run alive every few seconds, so a killed worker's run can be told from a slow one."""

    def __init__(self, run_id: int, every: float = 5.0):
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.run_id, self.every = run_id, every
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.every):
                TrainingRun.objects.filter(pk=self.run_id, status=Status.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:
            logger.exception("Heartbeat of run %s failed", self.run_id)
        finally:
            connection.close()


class _Progress:
    def __init__(self, run: TrainingRun, deadline: float):
        self.run, self.deadline = run, deadline
        self.lines: list[str] = []

    def __call__(self, stage: str, progress: int, line: str = "") -> None:
        if time.monotonic() > self.deadline:
            raise RunTimedOut(f"Training took longer than {settings.RETRAIN_TIMEOUT_SECONDS} seconds and was stopped.")
        if line:
            self.lines.append(f"{timezone.now():%H:%M:%S} {line}")
        TrainingRun.objects.filter(pk=self.run.pk).update(
            stage=stage, progress=progress, heartbeat_at=timezone.now(), log="\n".join(self.lines)
        )


def retrain_run(*, run_id: int) -> TrainingRun:
    """Carry out a queued run: approve, aggregate, train, gate, save, activate, re-score. Called by the task."""
    claimed = TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(), stage="starting",
        progress=2, message="Training…",
    )
    run = TrainingRun.objects.get(pk=run_id)
    if not claimed:
        logger.warning("Run %s was not queued (%s); not running it again", run_id, run.status)
        return run
    heartbeat = _Heartbeat(run.pk)
    heartbeat.start()
    progress = _Progress(run, time.monotonic() + settings.RETRAIN_TIMEOUT_SECONDS)
    started = time.monotonic()
    try:
        version = _train_and_publish(run, progress)
    except RunTimedOut as exc:
        _finish(run, Status.TIMED_OUT, str(exc), progress, "retrain.timed_out", AuditEvent.Outcome.FAILURE)
    except _Rejected as exc:
        _finish(run, Status.REJECTED, str(exc), progress, "retrain.rejected", AuditEvent.Outcome.FAILURE)
    except Exception as exc:
        logger.exception("Run %s failed", run.pk)
        _finish(run, Status.FAILED, f"Training failed: {exc}. The previous model keeps serving.", progress,
                "retrain.failed", AuditEvent.Outcome.FAILURE)
    else:
        held = version.status == ModelVersion.Status.HELD
        message = (
            f"Model v{version.version} trained but held back: {version.gate_reason} "
            f"The previous model keeps serving; a security admin can activate v{version.version} anyway."
            if held else
            f"Model v{version.version} is active: learned from {version.records:,} records of "
            f"{version.processes:,} processes on {version.hosts} hosts in {time.monotonic() - started:.1f} s."
        )
        _finish(run, Status.SUCCEEDED, message, progress, "retrain.succeeded", AuditEvent.Outcome.SUCCESS,
                version=version)
    finally:
        heartbeat.stopped.set()
    run.refresh_from_db()
    return run


class _Rejected(Exception):
    pass


def _finish(run, status, message, progress, action, outcome, version: ModelVersion | None = None) -> None:
    if status != Status.SUCCEEDED:
        # No model learned them: what this run approved goes back to the open flags.
        approvals_revert(run=run)
    if progress.lines or message:
        progress.lines.append(f"{timezone.now():%H:%M:%S} {message}")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(), message=message, stage="done" if status == Status.SUCCEEDED else status,
        progress=100 if status == Status.SUCCEEDED else F("progress"), log="\n".join(progress.lines),
        model_version=version,
    )
    run.refresh_from_db()
    details = {"message": message, "trigger": run.trigger, "reason": run.reason, "exclude": run.exclude,
               "duration_seconds": run.duration_seconds, "log_head": run.log[:500]}
    if version is not None:
        details.update(model_version=version.version, records=version.records, processes=version.processes,
                       hosts=version.hosts, activated=version.is_active)
    audit_record(action=action, actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
                 outcome=outcome, details=details)
    _notify(run)


def _notify(run: TrainingRun) -> None:
    """E-mail the person who pressed; a mail failure is logged, never the run's outcome."""
    user = run.triggered_by
    if user is None or not user.email:
        return
    try:
        send_mail(
            subject=f"Voltaxe retrain {run.get_status_display()}: run {run.pk}",
            message=f"{run.message}\n\nTrigger: {run.trigger}\nReason: {run.reason or '-'}\n"
                    f"Excluded: {', '.join(run.exclude) or '-'}\n",
            from_email=None, recipient_list=[user.email], fail_silently=False,
        )
    except Exception:
        logger.exception("Could not e-mail %s about run %s", user.email, run.pk)


def _train_and_publish(run: TrainingRun, progress: _Progress) -> ModelVersion:
    from axon.features import FEATURE_NAMES, FEATURE_VERSION
    from axon.training import InsufficientData, TrainParams, train

    active = ModelVersion.objects.filter(is_active=True).first()
    if run.approve:
        progress("approving", 10, "Approving what was flagged since the active model's data")
        approved = approvals_create(run=run, active=active)
        progress("approving", 15, f"Approved {approved} process(es) as ordinary; excluded: {', '.join(run.exclude) or 'none'}")
    until = timezone.now()
    since = until - timedelta(days=settings.TRAINING_WINDOW_DAYS)
    progress("aggregating", 20, f"Aggregating {settings.TRAINING_WINDOW_DAYS} days of telemetry in the database")
    window, counts = window_aggregate(since=since, until=until)
    progress("training", 45, f"{counts['records']:,} records in {len(window.combos):,} combinations on {counts['hosts']} hosts")
    approvals = frozenset(Approval.objects.values_list("hostname", "name", "exe", "parent"))
    params = TrainParams(min_records=settings.MIN_TRAINING_RECORDS, min_processes=settings.MIN_TRAINING_PROCESSES)
    t0 = time.monotonic()
    try:
        model = train(window, approved=approvals, params=params)
    except InsufficientData as exc:
        raise _Rejected(f"Not enough data to train: {exc}") from None
    training_seconds = time.monotonic() - t0
    progress("evaluating", 70, f"Trained in {training_seconds:.1f} s; comparing with the active model on recent data")
    metrics = dict(getattr(model, "stats", {}) or {})
    recent = _recent_ordinary(limit=RECENT_EVAL_LIMIT)
    candidate_rate = _flag_rate(model, recent)
    metrics["recent_flag_rate"] = candidate_rate
    metrics["recent_rows"] = len(recent)
    gate_reason = ""
    if active is not None and recent:
        try:
            active_model = artifact_load(active.artifact_path, active.sha256, version=active.version)
            active_rate = _flag_rate(active_model, recent)
        except Exception as exc:  # an unloadable active model cannot veto its replacement
            logger.warning("Active model v%s could not be loaded for comparison: %s", active.version, exc)
            active_rate = None
        metrics["active_recent_flag_rate"] = active_rate
        if active_rate is not None and candidate_rate > max(active_rate * GATE_RELATIVE, active_rate + GATE_ABSOLUTE):
            gate_reason = (
                f"it would flag {candidate_rate:.2%} of the last {RECENT_EVAL_HOURS} h of ordinary data, "
                f"against {active_rate:.2%} for the active v{active.version}."
            )
    progress("saving", 80, "Saving the model file")
    # One run at a time (the single-flight constraint), so the next number is free.
    number = (ModelVersion.objects.aggregate(n=Max("version"))["n"] or 0) + 1
    path, sha256, size, data = artifact_write(model, version=number)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            version=number, status=ModelVersion.Status.HELD if gate_reason else ModelVersion.Status.RETIRED,
            trained_at=timezone.now(), window_start=since, window_end=until, data_until=counts["data_until"],
            records=counts["records"], processes=counts["processes"], hosts=counts["hosts"],
            feature_version=FEATURE_VERSION, feature_names=list(FEATURE_NAMES),
            parameters={k: v for k, v in vars(params).items() if isinstance(v, (int, float, str, bool, type(None)))},
            metrics=_jsonable(metrics), sklearn_version=sklearn.__version__, artifact_path=path, sha256=sha256,
            size_bytes=size, training_seconds=round(training_seconds, 3), gate_reason=gate_reason, run=run,
        )
        ModelArtifact.objects.create(model_version=version, data=data)
    if not gate_reason:
        progress("activating", 88, f"Activating v{number}")
        model_version_activate(version=number, user=None, run=run, loaded=model)
        progress("rescoring", 95, "Re-scoring recent flags with the new model")
    return version


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# --- the data -----------------------------------------------------------------------------

_TRAINABLE = Q(flagged__isnull=True) | Q(flagged=False) | Q(status=ProcessRecord.Status.APPROVED)


def window_aggregate(*, since: datetime, until: datetime):
    """The window as the model needs it, aggregated by the database: cost grows with combinations, not records.

    Flagged observations nobody approved are left out, so a running attack never
    becomes ordinary by being retrained on.
    """
    from axon.features import ComboTable, WindowData

    cpu = Coalesce(F("cpu_percent"), Value(0.0))
    mem = Coalesce(Cast(F("memory_rss"), FloatField()), Value(0.0)) / Value(1048576.0)
    rows = (
        ProcessRecord.objects.filter(observed_at__gte=since, observed_at__lt=until).filter(_TRAINABLE)
        .order_by()
        .values_list("endpoint_id", "name_norm", "exe_norm", "parent_name", "username", "hour")
        .annotate(n=Count("id"), cpu_sum=Sum(cpu), cpu_sq=Sum(cpu * cpu), mem_sum=Sum(mem), mem_sq=Sum(mem * mem))
    )
    hosts = dict(Endpoint.objects.values_list("pk", "hostname"))
    table = ComboTable.from_rows(
        (hosts[r[0]], r[1], r[2], r[3], r[4], r[5], r[6], r[7] or 0.0, r[8] or 0.0, r[9] or 0.0, r[10] or 0.0)
        for r in rows.iterator(chunk_size=20_000)
    )
    per_host = (
        Snapshot.objects.filter(timestamp__gte=since, timestamp__lt=until).order_by()
        .values_list("endpoint_id").annotate(n=Count("id"), last=Max("timestamp"))
    )
    host_snapshots, data_until = {}, None
    for endpoint_id, n, last in per_host:
        host_snapshots[hosts[endpoint_id]] = n
        data_until = last if data_until is None or last > data_until else data_until
    host_os = {h: os_ for h, os_ in Endpoint.objects.filter(hostname__in=host_snapshots).values_list("hostname", "os")}
    window = WindowData(combos=table, host_snapshots=host_snapshots, host_os=host_os, days=(until - since).days)
    counts = {
        "records": int(table.count.sum()) if len(table) else 0,
        "processes": len(set(table.name)),
        "hosts": len(host_snapshots),
        "data_until": data_until,
    }
    return window, counts


def _observations(records) -> list[Observation]:
    return [
        Observation(host=r.endpoint.hostname, os=r.endpoint.os, name=r.name_norm, exe=r.exe_norm, parent=r.parent_name,
                    user=r.username, hour=r.hour, cpu=r.cpu_percent,
                    mem_mib=None if r.memory_rss is None else r.memory_rss / 1048576)
        for r in records
    ]


def _recent_ordinary(*, limit: int) -> list[Observation]:
    since = timezone.now() - timedelta(hours=RECENT_EVAL_HOURS)
    records = (
        ProcessRecord.objects.filter(observed_at__gte=since).filter(_TRAINABLE).select_related("endpoint")
        .order_by("-observed_at").only("endpoint__hostname", "endpoint__os", "name_norm", "exe_norm", "parent_name",
                                        "username", "hour", "cpu_percent", "memory_rss")[:limit]
    )
    return _observations(records)


def _flag_rate(model, rows: list[Observation]) -> float:
    if not rows:
        return 0.0
    verdicts = score_with(model, 0, rows)
    return sum(bool(f) for f in verdicts.flagged) / len(rows)


# --- approvals -----------------------------------------------------------------------------


def _excluded_names(exclude) -> set[str]:
    names = set()
    for name in exclude:
        for os_name in ("linux", "windows"):
            names.add(normalize_name(name, os_name).lower())
    return names


def _pending_flags(active: ModelVersion | None) -> Q:
    """Open flags on data the active model did not learn from: newer than its data, or delivered after it was trained."""
    q = Q(flagged=True, status=ProcessRecord.Status.OPEN)
    if active is not None and active.data_until is not None:
        q &= Q(observed_at__gt=active.data_until) | Q(snapshot__received_at__gt=active.trained_at)
    return q


def retrain_preview(*, exclude=()) -> dict:
    """What a press would approve now: flagged since the newest data the active model learned from."""
    active = ModelVersion.objects.filter(is_active=True).first()
    excluded = _excluded_names(exclude)
    rows = (
        ProcessRecord.objects.filter(_pending_flags(active)).order_by()
        .values("name_norm", "exe_norm", "endpoint__hostname")
        .annotate(name=Min("name"), exe=Min("exe"), observations=Count("id"), first_seen=Min("observed_at"))
    )
    grouped: dict[tuple, dict] = {}
    for row in rows:
        if row["name_norm"].lower() in excluded:
            continue
        item = grouped.setdefault((row["name_norm"], row["exe_norm"]), {
            "name": row["name"], "exe": row["exe"], "hostnames": [], "observations": 0, "first_seen": row["first_seen"]})
        item["hostnames"].append(row["endpoint__hostname"])
        item["observations"] += row["observations"]
        item["first_seen"] = min(item["first_seen"], row["first_seen"])
    items = sorted(grouped.values(), key=lambda i: -i["observations"])[:200]
    for item in items:
        item["hostnames"].sort()
    return {"will_learn": items, "active_model": active.version if active else None}


def approvals_create(*, run: TrainingRun, active: ModelVersion | None) -> int:
    """Approve, as ordinary, what was flagged on data `active` did not learn from, except the run's exclusions."""
    excluded = _excluded_names(run.exclude)
    pending = ProcessRecord.objects.filter(_pending_flags(active))
    keys = (
        pending.order_by().values("endpoint__hostname", "name_norm", "exe_norm", "parent_name")
        .annotate(observations=Count("id"), first_seen=Min("observed_at"))
    )
    created = 0
    for k in keys:
        if k["name_norm"].lower() in excluded:
            continue
        with transaction.atomic():
            _, made = Approval.objects.get_or_create(
                hostname=k["endpoint__hostname"], name=k["name_norm"], exe=k["exe_norm"], parent=k["parent_name"],
                defaults={"approved_by": run.triggered_by, "approved_by_name": run.triggered_by_name, "run": run,
                          "observations": k["observations"], "first_seen": k["first_seen"]},
            )
            pending.filter(endpoint__hostname=k["endpoint__hostname"], name_norm=k["name_norm"], exe_norm=k["exe_norm"],
                           parent_name=k["parent_name"]).update(status=ProcessRecord.Status.APPROVED)
        created += 1
    return created


def approvals_revert(*, run: TrainingRun) -> int:
    """Undo the approvals of a run that did not produce a model."""
    reverted = 0
    for approval in Approval.objects.filter(run=run):
        with transaction.atomic():
            ProcessRecord.objects.filter(
                endpoint__hostname=approval.hostname, name_norm=approval.name, exe_norm=approval.exe,
                parent_name=approval.parent, status=ProcessRecord.Status.APPROVED, flagged=True,
            ).update(status=ProcessRecord.Status.OPEN)
            approval.delete()
        reverted += 1
    return reverted


# --- versions --------------------------------------------------------------------------------


def model_version_activate(*, version: int, user=None, request=None, run: TrainingRun | None = None, loaded=None) -> ModelVersion:
    """Make `version` the one active model (roll back or forward), then re-score recent flags with it.

    The file is loaded and verified first: a version that cannot be loaded is never activated.
    """
    target = ModelVersion.objects.get(version=version)
    model = loaded if loaded is not None else artifact_load(target.artifact_path, target.sha256, version=target.version)
    from axon.scoring import check_compatible

    check_compatible(model)
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).update(
            is_active=False, status=ModelVersion.Status.RETIRED)
        ModelVersion.objects.filter(pk=target.pk).update(
            is_active=True, status=ModelVersion.Status.ACTIVE, activated_at=timezone.now())
    target.refresh_from_db()
    model_cache.reset()
    if run is None:
        audit_record(action="model.activated", actor=user, request=request, resource_type="model_version",
                     resource_id=version, details={"version": version})
    flags_rescore(model=model, version=version)
    if Snapshot.objects.filter(scored=False, timestamp__gte=timezone.now() - timedelta(hours=settings.RESCORE_HOURS)).exists():
        from django_q.tasks import async_task

        transaction.on_commit(lambda: async_task("axon.tasks.maintenance_task", task_name="score-pending"))
    return target


def flags_rescore(*, model, version: int, hours: int | None = None) -> int:
    """Re-judge the flags of the last hours with `model`; what it clears leaves the dashboard. Returns how many cleared.

    Only the verdict changes are written, a few set-based UPDATEs whatever the number
    of flags: rows it still flags keep the score and reasons they were flagged with.
    """
    since = timezone.now() - timedelta(hours=settings.RESCORE_HOURS if hours is None else hours)
    records = list(
        ProcessRecord.objects.filter(flagged=True, observed_at__gte=since)
        .exclude(status=ProcessRecord.Status.CLEARED).select_related("endpoint")
        .only("pk", "snapshot_id", "status", "endpoint__hostname", "endpoint__os", "name_norm", "exe_norm",
              "parent_name", "username", "hour", "cpu_percent", "memory_rss")
    )
    if not records:
        return 0
    verdicts = score_with(model, version, _observations(records))
    cleared = [r for r, flagged in zip(records, verdicts.flagged) if not flagged]
    with transaction.atomic():
        for chunk in _chunks([r.pk for r in cleared if r.status == ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(
                flagged=False, status=ProcessRecord.Status.CLEARED, model_version=version)
        for chunk in _chunks([r.pk for r in cleared if r.status != ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(flagged=False, model_version=version)
        _recount({r.snapshot_id for r in cleared})
    return len(cleared)


def _chunks(items: list, size: int = 5000):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _recount(snapshot_ids) -> None:
    """Recount the anomalies of these snapshots, one UPDATE per chunk."""
    flagged = ProcessRecord.objects.filter(snapshot_id=OuterRef("pk"), flagged=True).order_by().values("snapshot_id")
    for chunk in _chunks(sorted(snapshot_ids)):
        Snapshot.objects.filter(pk__in=chunk).update(
            anomaly_count=Coalesce(Subquery(flagged.annotate(n=Count("id")).values("n")), Value(0))
        )


def snapshots_score_pending(*, model=None, version: int | None = None, batch: int = 200, limit: int = 20_000) -> int:
    """Score the recent snapshots stored while no model could score them, oldest first. Returns how many.

    Recent: within RESCORE_HOURS. Older unscored snapshots are history the
    model learned from; judging them afresh would only bury the dashboard.

    Many snapshots go through the model at once; ordinary rows are marked in one
    UPDATE per batch (their score is not kept), flagged rows one by one.
    """
    if model is None:
        version, model = model_cache.get()
        if model is None:
            return 0
    done, recent = 0, timezone.now() - timedelta(hours=settings.RESCORE_HOURS)
    while done < limit:
        unscored = Snapshot.objects.filter(scored=False, timestamp__gte=recent).order_by("timestamp")
        ids = list(unscored.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        records = list(ProcessRecord.objects.filter(snapshot_id__in=ids).select_related("endpoint"))
        verdicts = score_with(model, version, _observations(records)) if records else None
        flagged = []
        for i, record in enumerate(records):
            assert verdicts is not None  # records is not empty
            if verdicts.flagged[i]:
                record.score, record.flagged, record.reasons = verdicts.scores[i], True, verdicts.reasons[i]
                record.model_version, record.status = version, ProcessRecord.Status.OPEN
                flagged.append(record)
        with transaction.atomic():
            ProcessRecord.objects.filter(snapshot_id__in=ids, flagged__isnull=True).exclude(
                pk__in=[r.pk for r in flagged]
            ).update(flagged=False, model_version=version, status="")
            ProcessRecord.objects.bulk_update(flagged, ["score", "flagged", "reasons", "model_version", "status"], batch_size=500)
            Snapshot.objects.filter(pk__in=ids).update(scored=True, model_version=version)
            _recount({r.snapshot_id for r in flagged})
        done += len(ids)
    return done


# --- runs ------------------------------------------------------------------------------------


def runs_reap(*, now: datetime | None = None) -> int:
    """End runs whose worker is gone: past the timeout → timed out; silent past the grace period → failed."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.RETRAIN_REAP_GRACE_SECONDS)
    timeout = timedelta(seconds=settings.RETRAIN_TIMEOUT_SECONDS)
    ended = 0
    stuck = TrainingRun.objects.filter(
        Q(status=Status.RUNNING, started_at__lt=now - timeout - grace)
        | Q(status=Status.RUNNING, heartbeat_at__lt=now - grace)
        | Q(status=Status.QUEUED, created_at__lt=now - timeout - grace)
    )
    for run in stuck:
        if run.status == Status.QUEUED:
            status, action = Status.FAILED, "retrain.failed"
            message = (f"No worker picked this run up within {int((timeout + grace).total_seconds())} s; "
                       "check that the worker (manage.py qcluster) is running. The previous model keeps serving.")
        elif run.started_at and run.started_at < now - timeout:
            status, action = Status.TIMED_OUT, "retrain.timed_out"
            message = (f"Training did not finish within {settings.RETRAIN_TIMEOUT_SECONDS} s and was stopped. "
                       "The previous model keeps serving.")
        else:
            status, action = Status.FAILED, "retrain.failed"
            message = (f"The worker stopped responding during '{run.stage}' (no heartbeat for "
                       f"{settings.RETRAIN_REAP_GRACE_SECONDS} s); it was probably killed. The previous model keeps serving.")
        if TrainingRun.objects.filter(pk=run.pk, status=run.status).update(
            status=status, finished_at=now, message=message, stage=status
        ):
            ended += 1
            run.refresh_from_db()
            audit_record(action=action, actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
                         outcome=AuditEvent.Outcome.FAILURE, details={"message": message, "reaped": True})
            _notify(run)
    return ended


def axon_status() -> dict:
    runs_reap()
    from voltaxe.views import worker_alive

    active = ModelVersion.objects.filter(is_active=True).first()
    current = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    model_cache.get()  # refresh, so serving_version and model_error below are current
    return {
        "active": active,
        "current_run": current,
        "worker_alive": worker_alive(),
        "serving_version": model_cache.version,
        "model_error": model_cache.error,
        "last_run": TrainingRun.objects.first(),
        "estimate_seconds": retrain_estimate_seconds(),
    }

