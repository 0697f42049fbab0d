"""Axon services: the panic button, training runs, model versions, approvals and re-scoring.

The API, the page, the admin action, the management command and the django-q2
tasks all call these functions; none of them holds logic of its own.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np
import sklearn
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, FloatField, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import actor_name, audit_record, client_ip
from axon import notifications
from axon.models import Alert, AlertChange, Approval, ModelArtifact, ModelVersion, TrainingRun
from axon.risk import HIGH, SPREADING_HOSTS, Candidate, Fleet, assess
from axon.scoring import model_cache, score_with
from axon.severity import severity
from axon.store import ArtifactError, artifact_load, artifact_write
from telemetry.models import Endpoint, HostDay, ProcessRecord, ProcessRollup, Snapshot
from telemetry.normalize import normalize_exe, normalize_name
from telemetry.rollups import CPU, HOUR_COUNTS, HOUR_CPU, KEY_TEXT, MEM_MIB, SUMS
from telemetry.scoring import Observation
from voltaxe.rates import parse_rate

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
RECENT_EVAL_HOURS = 24
# Enough to resolve a 0.005 % flag rate, far finer than the gate's margins; every row is scored
# twice at each press (the candidate and the active model), 1.6 s for 50,000 at a million records.
RECENT_EVAL_LIMIT = 20_000
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


@dataclass(frozen=True)
class Actor:
    """Who acts, and through which door; the address and user agent are only for the audit log."""

    user: Any = None  # a User, AnonymousUser or an agent principal
    door: str = TrainingRun.Trigger.COMMAND
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request, door: str) -> Actor:
        return cls(user=request.user, door=door, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", ""))

    @property
    def is_person(self) -> bool:
        return self.door in PERSON_DOORS

    def audit(self, action: str, **kwargs) -> None:
        # audit_record reads the address and user agent off a request; hand it just those.
        shim = SimpleNamespace(user=self.user, client_ip=self.ip,  # already resolved behind any trusted proxy
                               META={"REMOTE_ADDR": self.ip, "HTTP_USER_AGENT": self.user_agent})
        audit_record(action=action, actor=self.user, request=shim if self.ip or self.user_agent else None, **kwargs)


# Doors where a person presses: these are rate-limited. The command is the operator's shell; the schedule is no one.
PERSON_DOORS = (TrainingRun.Trigger.DASHBOARD, TrainingRun.Trigger.API, TrainingRun.Trigger.ADMIN)


class Denied(Exception):
    pass


class Overruled(Denied):
    """Allowed to triage, but not this: a security admin's verdict, or hiding a high-risk alert."""


class InvalidInput(Exception):
    def __init__(self, detail: str, errors: dict):
        super().__init__(detail)
        self.detail, self.errors = detail, errors


def retrain_request(*, actor: Actor, body=None, enqueue: bool = True) -> RetrainOutcome:
    """Check, record and queue a press, or join the run in flight; every outcome is audited the same for every door.

    body: {"reason", "exclude", "approve"} (see RetrainBody). What the run approves is
    fixed here, at press time: the keys listed in `approve` that are still candidates,
    or without `approve` the candidates with `default` true; never a malicious or closed
    key, nothing flagged after this moment. Raises Denied, InvalidInput or RateLimited;
    none of them uses up a limit.
    """
    from axon.serializers import RetrainBody, first_error

    scheduled = actor.door == TrainingRun.Trigger.SCHEDULE
    if actor.is_person and not (actor.user is not None and actor.user.has_perm("axon.trigger_retrain")):
        actor.audit("retrain.denied", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "reason": "missing axon.trigger_retrain"})
        raise Denied("Only security admins may retrain the model.")
    serializer = RetrainBody(data={} if body in (None, "") else body)
    if not serializer.is_valid():
        detail = f"{first_error(serializer.errors)} Nothing was started."
        actor.audit("retrain.invalid", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "errors": _jsonable(serializer.errors)})
        raise InvalidInput(detail, serializer.errors)
    data = serializer.validated_data
    reason = data["reason"].strip()
    exclude = sorted({name.strip() for name in data["exclude"] if name.strip()})
    details = {"trigger": actor.door, "reason": reason, "exclude": exclude}
    if actor.is_person:
        limited = _rate_limit_wait(actor.user)
        if limited is not None:
            wait, scope = limited
            actor.audit("retrain.rate_limited", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED,
                        aggregate=True, details={**details, "scope": scope, "retry_after": wait})
            raise RateLimited(wait, scope)
    # Read before anything is written: if the cache is down, the press fails whole (503), starting nothing.
    retrain_estimate_seconds()
    in_flight = _in_flight_after_reaping()
    if in_flight is not None:
        actor.audit("retrain.joined", resource_type="training_run", resource_id=in_flight.pk, details=details)
        return RetrainOutcome(run=in_flight, started=False)
    try:
        approved, unticked, refused = ([], [], []) if scheduled else press_selection(
            approve=data["approve"], exclude=exclude, confirmed=data["confirm_high_risk"])
    except InvalidInput as exc:
        actor.audit("retrain.invalid", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "errors": _jsonable(exc.errors)})
        raise
    user = actor.user if getattr(actor.user, "pk", None) else None
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=actor.door, triggered_by=user,
                triggered_by_name=actor_name(actor.user) or ("scheduler" if scheduled else ""),
                reason=reason, exclude=exclude, approve=not scheduled, approved=approved, message="Waiting for a worker.",
            )
    except IntegrityError:
        running = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
        if running is None:  # it finished between our insert and this read; press again
            return retrain_request(actor=actor, body=body, enqueue=enqueue)
        actor.audit("retrain.joined", resource_type="training_run", resource_id=running.pk, details=details)
        return RetrainOutcome(run=running, started=False)
    actor.audit("retrain.started", resource_type="training_run", resource_id=run.pk, details={
        **details, "approve_given": data["approve"] is not None, "approved": [a["key"] for a in approved],
        "unticked": unticked, "not_approvable": refused})
    notifications.press_pressed(run, unticked, refused)
    if enqueue:
        _enqueue(run)
    return RetrainOutcome(run=run, started=True)


def _in_flight_after_reaping() -> TrainingRun | None:
    # Most presses during a run join it: one read answers them, and only then is it worth
    # checking whether that run's worker died.
    in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    if in_flight is not None and runs_reap():
        in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    return in_flight


def _rate_limit_wait(user) -> tuple[int, str] | None:
    """Sliding windows over what was recorded: (seconds to wait, scope) when over a limit.

    Per user, the presses that went through (started a run or joined one, from the audit
    log); for the team, the runs people started. So a limit means "N in any period", not
    "N per clock window", and a refused press (denied, invalid, limited) uses nothing up.
    """
    now = timezone.now()
    presses = AuditEvent.objects.filter(actor=user, action__in=("retrain.started", "retrain.joined"))
    runs = TrainingRun.objects.filter(trigger__in=PERSON_DOORS)
    for scope, rate, times in (("user", settings.RETRAIN_USER_RATE, presses.values_list("timestamp", flat=True)),
                               ("global", settings.RETRAIN_GLOBAL_RATE, runs.values_list("created_at", flat=True))):
        limit, period = parse_rate(rate)
        field_name = "timestamp" if scope == "user" else "created_at"
        recent = list(times.filter(**{f"{field_name}__gt": now - period}).order_by(f"-{field_name}")[:limit])
        if len(recent) >= limit:
            # The window frees up when the oldest of the last `limit` runs leaves it.
            return max(1, math.ceil((recent[-1] + period - now).total_seconds())), scope
    return None


def _enqueue(run: TrainingRun) -> None:
    from django_q.tasks import async_task

    def send() -> None:
        try:
            task_id = async_task("axon.tasks.retrain_task", run.pk, task_name=f"retrain-run-{run.pk}")
        except Exception as exc:  # the broker is down: say so now instead of leaving a run nobody will pick up
            logger.exception("Could not queue run %s", run.pk)
            message = f"The run could not be queued ({exc.__class__.__name__}: {exc}). The previous model keeps serving."
            if run.finish(Status.FAILED, message, only_from=[Status.QUEUED]):
                audit_record(action="retrain.failed", actor=run.triggered_by, resource_type="training_run",
                             resource_id=run.pk, outcome=AuditEvent.Outcome.FAILURE, details={"message": message})
            return
        run.queued_as(str(task_id or ""))

    transaction.on_commit(send)


# --- the run (in the worker) ---------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Marks the run alive every few seconds, so a killed worker's run can be told from a slow one."""

    def __init__(self, run: TrainingRun, every: float = 5.0):
        super().__init__(daemon=True, name=f"heartbeat-{run.pk}")
        self.training_run, self.every = run, every
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.every):
                self.training_run.beat()
        except Exception:
            logger.exception("Heartbeat of run %s failed", self.training_run.pk)
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
        self.run.report_progress(stage, progress, "\n".join(self.lines))


def retrain_run(*, run_id: int) -> TrainingRun:
    """Carry out a queued run: approve, aggregate, train, gate, save, activate, re-score. Called by the task."""
    run = TrainingRun.objects.get(pk=run_id)
    if not run.claim():
        logger.warning("Run %s was not queued (%s); not running it again", run_id, run.status)
        return run
    heartbeat = _Heartbeat(run)
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
        held = bool(version.gate_reason)
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
    run.finish(status, message, log="\n".join(progress.lines), version=version)
    details = {"message": message, "trigger": run.trigger, "reason": run.reason, "exclude": run.exclude,
               "duration_seconds": run.duration_seconds, "log_head": run.log[:500]}
    if version is not None:
        details.update(model_version=version.version, records=version.records, processes=version.processes,
                       hosts=version.hosts, activated=version.is_active)
    audit_record(action=action, actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
                 outcome=outcome, details=details)
    notifications.run_finished(run)
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
        progress("approving", 10, f"Approving the {len(run.approved)} item(s) chosen at the press")
        approved = approvals_create(run=run)
        progress("approving", 15, f"Approved {approved} item(s) as ordinary; excluded: {', '.join(run.exclude) or 'none'}")
    until = timezone.now()
    since = until - timedelta(days=settings.TRAINING_WINDOW_DAYS)
    progress("aggregating", 20, f"Aggregating {settings.TRAINING_WINDOW_DAYS} days of telemetry in the database")
    window, counts = window_aggregate(since=since, until=until)
    since = counts["window_start"]
    progress("training", 45, f"{counts['records']:,} records in {len(window.combos):,} combinations on {counts['hosts']} hosts")
    approvals = frozenset(Approval.objects.values_list("hostname", "name", "exe", "parent", "script"))
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
    candidate_flags = _flags_by_host(model, recent)
    candidate_rate = sum(candidate_flags.values()) / len(recent) if recent else 0.0
    metrics["recent_flag_rate"] = candidate_rate
    metrics["recent_rows"] = len(recent)
    gate_reason = ""
    if active is not None and recent:
        try:
            active_model = artifact_load(active.artifact_path, active.sha256, version=active.version)
            active_flags: Counter[str] | None = _flags_by_host(active_model, recent)
        except Exception as exc:  # an unloadable active model cannot veto its replacement
            logger.warning("Active model v%s could not be loaded for comparison: %s", active.version, exc)
            active_flags = None
        metrics["active_recent_flag_rate"] = None if active_flags is None else sum(active_flags.values()) / len(recent)
        if active_flags is not None:
            rows = Counter(r.host for r in recent)
            held, worst = _gate(candidate_flags, active_flags, rows)
            if held:
                gate_reason = (
                    f"it would flag {candidate_rate:.2%} of the last {RECENT_EVAL_HOURS} h of ordinary data, "
                    f"against {metrics['active_recent_flag_rate']:.2%} for the active v{active.version}; "
                    f"most of the difference is on {', '.join(worst)}."
                )
            elif worst:
                metrics["gate_outlier_host"] = worst[0]  # it alone would have held the model back
    progress("saving", 80, "Saving the model file")
    # One run at a time (the single-flight constraint), so the next number is free.
    number = (ModelVersion.objects.aggregate(n=Max("version"))["n"] or 0) + 1
    path, sha256, size, data = artifact_write(model, version=number)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            version=number,
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

_exe_key = lru_cache(maxsize=65536)(normalize_exe)
_TRAINABLE = Q(flagged__isnull=True) | Q(flagged=False) | Q(status=ProcessRecord.Status.APPROVED)
# Its complement, spelled so that PostgreSQL reads it from the flagged-records index (~_TRAINABLE,
# with Django's NULL guards, scanned the whole window: 333 ms against 0.2 ms at a million records).
_LEFT_OUT = Q(flagged=True) & ~Q(status=ProcessRecord.Status.APPROVED)


def window_aggregate(*, since: datetime, until: datetime):
    """The window as the model needs it, read from the daily rollups (telemetry/rollups.py).

    The cost follows distinct combinations a day, not records. The window opens at midnight UTC
    of `since`'s day, as rollups are whole days (``counts["window_start"]``). Flagged observations
    nobody approved are left out, so a running attack never becomes ordinary by being retrained
    on: the rollups hold every record, so those few are read from the raw records (in the same
    database snapshot) and subtracted, as is what a reborn host ran on the day it came back,
    before it did. Snapshots a host sent are counted from ``HostDay`` the same way.
    """
    from axon.features import SUM_COLUMNS, ComboTable, WindowData
    from axon.lineage import CommandTable

    start = datetime.combine(since.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    # A host that came back as another machine: what it ran before is forgotten (usually no host).
    old_days, old_records, cut_records, cut_snapshots = Q(), Q(), Q(), Q()
    reborn: list[tuple[int, datetime]] = list(
        Endpoint.objects.filter(reborn_at__gt=start).values_list("pk", "reborn_at"))  # type: ignore[arg-type]
    for endpoint_id, reborn_at in reborn:
        midnight = datetime.combine(reborn_at.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
        old_days |= Q(endpoint_id=endpoint_id, day__lt=midnight.date())
        old_records |= Q(endpoint_id=endpoint_id, observed_at__lt=midnight)
        cut_records |= Q(endpoint_id=endpoint_id, observed_at__gte=midnight, observed_at__lt=reborn_at)
        cut_snapshots |= Q(endpoint_id=endpoint_id, timestamp__gte=midnight, timestamp__lt=reborn_at)
    outermost = not connection.in_atomic_block
    rollup_query = (
        ProcessRollup.objects.filter(day__gte=start.date()).exclude(old_days).order_by()
        .values("endpoint_id", "combo")  # the grouping...
        .annotate(**{f"{k}_": Min(k) for k in KEY_TEXT},
                  **{f"{c}_": Cast(Sum(c), FloatField()) for c in (*SUMS, *HOUR_COUNTS, *HOUR_CPU)})
        # ...and what is read of it: the digest is only a key.
        .values_list("endpoint_id", *(f"{k}_" for k in KEY_TEXT), *(f"{c}_" for c in (*SUMS, *HOUR_COUNTS, *HOUR_CPU)))
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if outermost:  # one snapshot for the rollups and what is taken from them
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # A long GROUP BY is no place for the JIT (2.4 s of compiling to save less), and a hash
            # of a big fleet's combos (about 100 MB a process at 1,000 hosts) beats sorting them on
            # disk: 2.6 s instead of 4.1 s. Below 256 MB the planner chose the sort.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
        # Raw rows, without the ORM's per-value converters: 70,000 rows of 53 sums at 1,000 hosts.
        cursor.execute(*rollup_query.query.sql_with_params())
        rollups = cursor.fetchall()
        left_out = list(
            ProcessRecord.objects.filter(observed_at__gte=start).filter(_LEFT_OUT | cut_records)
            .exclude(old_records).order_by()
            .values_list("endpoint_id", *KEY_TEXT, "hour")
            .annotate(n=Count("id"), cpu_sum=Sum(CPU), cpu_sq=Sum(CPU * CPU), mem_sum=Sum(MEM_MIB),
                      mem_sq=Sum(MEM_MIB * MEM_MIB))
        )
        per_host = list(
            HostDay.objects.filter(day__gte=start.date()).exclude(old_days).order_by()
            .values_list("endpoint_id").annotate(n=Sum("snapshots"), last=Max("last_at"))
        )
        before_rebirth = dict(Snapshot.objects.filter(cut_snapshots, source="snapshot").order_by().values_list("endpoint_id")
                              .annotate(n=Count("id"))) if cut_snapshots else {}
    # Columns: n, cpu_sum, cpu_sq, mem_sum, mem_sq, then the 24 hour counts and the 24 hour CPU sums.
    sums = np.array([r[6:] for r in rollups], dtype=np.float64).reshape(len(rollups), SUM_COLUMNS)
    row_of = {r[:6]: i for i, r in enumerate(rollups)}
    for endpoint_id, name, exe, parent, user, args, hour, n, *taken in left_out:
        i = row_of.get((endpoint_id, name, exe, parent, user, args))
        if i is not None:
            sums[i, :5] -= (n, *(x or 0.0 for x in taken))
            sums[i, 5 + hour] -= n
            sums[i, 29 + hour] -= taken[0] or 0.0

    hosts, endpoint_os = {}, {}
    for pk, hostname, os_ in Endpoint.objects.values_list("pk", "hostname", "os"):
        hosts[pk], endpoint_os[pk] = hostname, os_
    keys: dict[tuple, int] = {}
    group = np.zeros(len(rollups), dtype=np.int64)
    command_counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for i, (endpoint_id, name, exe, parent, user, args, *_) in enumerate(rollups):
        host = hosts[endpoint_id]
        # Rows stored before a normalization change (e.g. per-run random folders folded) keep their
        # old exe_norm; normalizing is idempotent, so folding it again here lets them meet the new
        # rows under one key. Once per distinct combination, not per record.
        key = (host, name, _exe_key(exe, endpoint_os.get(endpoint_id, "") or "linux"), parent, user)
        group[i] = keys.setdefault(key, len(keys))
        # The command-line tokens are split off, so the combos the forest is drawn from do not
        # multiply with a program's varying arguments.
        if args and sums[i, 0] > 0:
            command_counts[(host, name, args)] += int(sums[i, 0])
    combined = np.zeros((len(keys), SUM_COLUMNS))
    np.add.at(combined, group, sums)
    table = ComboTable.from_sums(list(keys), combined)
    command_table = CommandTable.from_rows((*k, n) for k, n in command_counts.items())
    host_snapshots, data_until = {}, None
    for endpoint_id, n, last in per_host:
        host_snapshots[hosts[endpoint_id]] = n - before_rebirth.get(endpoint_id, 0)
        data_until = last if data_until is None or last > data_until else data_until
    host_os = {hosts[endpoint_id]: endpoint_os[endpoint_id] for endpoint_id, _, _ in per_host}
    window = WindowData(combos=table, host_snapshots=host_snapshots, host_os=host_os, days=(until - start).days,
                        commands=command_table)
    counts = {
        "records": int(table.count.sum()) if len(table) else 0,
        "processes": len(set(table.name)),
        "hosts": len(host_snapshots),
        "data_until": data_until,
        "window_start": start,
    }
    return window, counts


# What _observations reads of a record: its fields and its host's name and OS, annotated so
# that model instances and plain named rows (values_list(named=True)) both carry them.
_OBSERVED = ("name_norm", "exe_norm", "parent_name", "pid", "ppid", "username", "hour", "cpu_percent", "memory_rss",
             "script", "args_norm", "cpu_streak")
_HOST = {"host": F("endpoint__hostname"), "host_os": F("endpoint__os")}


def _observations(records) -> list[Observation]:
    """Records (annotated with ``_HOST``) as the model judges them."""
    return [
        # Stored exe_norm folded again, as window_aggregate does: old rows meet the current folding.
        Observation(host=r.host, os=r.host_os, name=r.name_norm,
                    exe=_exe_key(r.exe_norm, r.host_os or "linux"), parent=r.parent_name,
                    user=r.username, hour=r.hour, cpu=r.cpu_percent,
                    mem_mib=None if r.memory_rss is None else r.memory_rss / 1048576, script=r.script, args=r.args_norm,
                    names_only=r.pid is None and r.ppid is None and not r.exe_norm and not r.username,
                    prior_streak=max(0, r.cpu_streak - 1))  # judged again with the memory it was judged with
        for r in records
    ]


def _recent_ordinary(*, limit: int) -> list[Observation]:
    since = timezone.now() - timedelta(hours=RECENT_EVAL_HOURS)
    # Named rows, not model instances: 50,000 of them at every press.
    records = (
        ProcessRecord.objects.filter(observed_at__gte=since).filter(_TRAINABLE).annotate(**_HOST)
        .order_by("-observed_at").values_list(*_OBSERVED, *_HOST, named=True)[:limit]
    )
    return _observations(records)


def _flags_by_host(model, rows: list[Observation]) -> Counter[str]:
    if not rows:
        return Counter()
    verdicts = score_with(model, 0, rows)
    return Counter(r.host for r, f in zip(rows, verdicts.flagged) if f)


def _gate(candidate: Counter[str], active: Counter[str], rows: Counter[str]) -> tuple[bool, list[str]]:
    """(held back, the hosts where the candidate flags most beyond the active model).

    A candidate that flags much more of recent ordinary data than the active model is held back,
    unless one host alone makes the difference: then that host is odd (a stolen key's listing, a
    machine mid-reinstall), not the model, and it must not hold back every model of the fleet.
    """
    def over(hosts: list[str]) -> bool:
        n = sum(rows[h] for h in hosts)
        c, a = sum(candidate[h] for h in hosts) / n, sum(active[h] for h in hosts) / n
        return c > max(a * GATE_RELATIVE, a + GATE_ABSOLUTE)

    excess = sorted((h for h in rows if candidate[h] > active[h]), key=lambda h: (active[h] - candidate[h], h))
    if not over(list(rows)):
        return False, []
    rest = [h for h in rows if h != excess[0]] if excess else list(rows)
    return (not rest or over(rest)), excess[:3]


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


def approval_key(hostname: str, name: str, exe: str, parent: str, script: str | None = "") -> str:
    """The opaque key of one approvable thing: a program (normalized name and path) under a parent on a host,
    with the script an interpreter ran. Without a script the key is what it was before scripts counted,
    so existing alerts' triage and older approvals keep their keys."""
    parts = (hostname, name, exe, parent) + ((script,) if script else ())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def flagged_candidates(records) -> list[Candidate]:
    """Group flagged ProcessRecords by approval key, judge each group's risk, attach its triage."""
    groups: dict[tuple, Candidate] = {}
    cpu_total: dict[tuple, tuple[float, int]] = {}
    rows = records.order_by().values_list(
        "endpoint__hostname", "name_norm", "exe_norm", "parent_name", "script", "name", "exe", "username", "observed_at",
        "score", "reasons", "cpu_percent", "id")
    for host, name_norm, exe_norm, parent, script, name, exe, user, seen, score, reasons, cpu, pk in rows.iterator(
            chunk_size=5000):
        group = (host, name_norm, exe_norm, parent, script)
        c = groups.get(group)
        if c is None:
            c = groups[group] = Candidate(
                key=approval_key(host, name_norm, exe_norm, parent, script), hostname=host, name_norm=name_norm,
                exe_norm=exe_norm, parent=parent, script=script, name=name, exe=exe, user=user, first_seen=seen,
                last_seen=seen, max_score=score, reasons=list(reasons or []))
        c.observations += 1
        c.first_seen, c.last_seen, c.newest_id = min(c.first_seen, seen), max(c.last_seen, seen), max(c.newest_id, pk)
        if score is not None and (c.max_score is None or score > c.max_score):
            c.max_score, c.reasons = score, list(reasons or [])
        if cpu is not None:
            total, n = cpu_total.get(group, (0.0, 0))
            cpu_total[group] = (total + cpu, n + 1)
    hosts_by_name: dict[str, set] = {}
    for c in groups.values():
        hosts_by_name.setdefault(c.name_norm, set()).add(c.hostname)
    fleet = Fleet(spreading=tuple(sorted(n for n, hosts in hosts_by_name.items() if len(hosts) >= SPREADING_HOSTS)))
    triage = {a.key: a for a in Alert.objects.filter(key__in=[c.key for c in groups.values()])} if groups else {}
    for group, c in groups.items():
        total, n = cpu_total.get(group, (0.0, 0))
        c.hosts, c.cpu = len(hosts_by_name[c.name_norm]), total / n if n else None
        c.risk, c.risk_reasons = assess(c, fleet)
        if c.key in triage:
            t = triage[c.key]
            c.status, c.note, c.updated_by, c.updated_at = t.status, t.note, t.updated_by_name, t.updated_at
            # Closing hides what was seen, not what comes. An alert closed before arrivals were recorded
            # (seen_up_to empty) goes by the timestamps instead.
            if t.status == Alert.Status.CLOSED and (
                    c.newest_id > t.seen_up_to if t.seen_up_to is not None else bool(c.last_seen and c.last_seen > t.updated_at)):
                c.status, c.reopened = Alert.Status.OPEN, True
    return list(groups.values())


def _press_candidates(*, exclude=()) -> tuple[list[Candidate], ModelVersion | None]:
    """What a press could approve now: flagged since the newest data the active model learned from,
    neither excluded by name nor marked malicious or closed. High risk first, then by program."""
    active = ModelVersion.objects.filter(is_active=True).first()
    excluded = _excluded_names(exclude)
    candidates = [
        c for c in flagged_candidates(ProcessRecord.objects.filter(_pending_flags(active)))
        # Re-opened after closing: in front of people again, still never learned unless someone re-triages it.
        if c.status not in Alert.NOT_LEARNABLE and not c.reopened and c.name_norm.lower() not in excluded
    ]
    late = _late_history(_pending_flags(active))
    per_host: dict[str, int] = defaultdict(int)
    for c in candidates:
        per_host[c.hostname] += 1
    budget = settings.HOST_NEW_PROGRAMS_BUDGET
    for c in candidates:
        if per_host[c.hostname] > budget:  # one host's flood is one decision, never a default
            c.held.append(f"one of {per_host[c.hostname]:,} new programs from {c.hostname} since the model last learned, "
                          f"more than the {budget} one host may put before you at once: a flood; tick it deliberately")
        if c.status == Alert.Status.ACKNOWLEDGED:
            c.held.append(f"acknowledged: someone is looking into it{f' ({c.note})' if c.note else ''}")
        if (group := (c.hostname, c.name_norm, c.exe_norm, c.parent, c.script)) in late:
            c.held.append(late[group])
    # What a default press will learn first, then what stays flagged unless someone ticks it (high risk first).
    candidates.sort(key=lambda c: (not c.default, c.risk != HIGH, c.name_norm.lower(), c.exe_norm, c.hostname, c.parent))
    cap = settings.MAX_APPROVALS_PER_PRESS
    for c in [c for c in candidates if c.default][cap:]:  # a default press stays within what one press may approve
        c.held.append(f"beyond the {cap} items one press may approve; press again once this run is done")
    candidates.sort(key=lambda c: not c.default)  # stable: those just held move behind the ones that stay ticked
    return candidates, active


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = max(1, round(seconds))
    return f"{n} second{'s' if n != 1 else ''}"


def _late_history(pending: Q) -> dict[tuple, str]:
    """Groups with observations received long after their timestamps, and what that looks like in words.

    A key that sits on an endpoint can backdate a month of snapshots in seconds; such history is
    stored and scored, but it must not make a program look established to a default press. What
    an operator loads without a key (the demo, a replay, ``manage.py collect``) is taken as on time.
    """
    late = timedelta(seconds=settings.LATE_HISTORY_SECONDS)
    rows = (ProcessRecord.objects.filter(pending, snapshot__agent__isnull=False)
            .filter(snapshot__received_at__gt=F("observed_at") + late).order_by()
            .values_list("endpoint__hostname", "name_norm", "exe_norm", "parent_name", "script")
            .annotate(n=Count("id"), first=Min("observed_at"), last=Max("observed_at"),
                      came=Min("snapshot__received_at"), went=Max("snapshot__received_at")))
    return {tuple(group): (f"{n} observation{'s' if n != 1 else ''} arrived late: {_span((last - first).total_seconds())} "
                           f"of history arrived in {_span((went - came).total_seconds())}; tick it only if you know "
                           "the host was offline")
            for *group, n, first, last, came, went in rows}


def retrain_preview(*, exclude=(), offset: int = 0, limit: int | None = None) -> dict:
    """Every candidate a press could approve now, with its key and risk; `total` counts them all."""
    candidates, active = _press_candidates(exclude=exclude)
    page = candidates[offset:None if limit is None else offset + limit]
    return {
        "as_of": timezone.now(),
        "total": len(candidates),
        "will_learn": [{
            "key": c.key, "name": c.name, "exe": c.exe, "parent": c.parent, "script": c.script, "user": c.user,
            "hostnames": [c.hostname], "observations": c.observations, "first_seen": c.first_seen,
            "last_seen": c.last_seen, "reasons": c.reasons, "risk": c.risk, "risk_reasons": c.risk_reasons,
            "default": c.default, "held_reasons": c.held, "note": c.note,
            "status": c.status,
        } for c in page],
        "more": limit is not None and offset + limit < len(candidates),
        "active_model": active.version if active else None,
    }


def press_selection(*, approve: list[str] | None, exclude=(), confirmed=()) -> tuple[list[dict], list[str], list[str]]:
    """(approved, unticked, not approvable) for a press now.

    approve None: the default (low-risk) candidates. Otherwise the listed keys that are
    candidates now; a key that is not (flagged after the preview and so never shown, marked
    malicious or closed since, unknown) is not approved and is reported as not approvable.
    A high-risk key is approved only when it is also in `confirmed`: a tick alone can be a
    slip or a forged form, so every door asks for the second step and this refuses without it.
    """
    candidates, _ = _press_candidates(exclude=exclude)
    if approve is None:
        chosen = [c for c in candidates if c.default]
        refused: list[str] = []
    else:
        wanted = set(approve)
        chosen = [c for c in candidates if c.key in wanted]
        refused = sorted(wanted - {c.key for c in chosen})
        unconfirmed = [c for c in chosen if c.risk == HIGH and c.key not in set(confirmed)]
        if unconfirmed:
            named = [f"{c.key}: {c.name} on {c.hostname}: {'; '.join(c.risk_reasons)}" for c in unconfirmed]
            raise InvalidInput(
                f"confirm_high_risk: {len(unconfirmed)} high-risk item{'s' if len(unconfirmed) != 1 else ''} "
                f"{'were' if len(unconfirmed) != 1 else 'was'} ticked without the second step, for example "
                f"{unconfirmed[0].name} on {unconfirmed[0].hostname} ({'; '.join(unconfirmed[0].risk_reasons)}). "
                "Confirm each one you mean to learn as normal, or untick it. Nothing was started.",
                {"confirm_high_risk": named[:50]})
    if len(chosen) > (cap := settings.MAX_APPROVALS_PER_PRESS):
        raise InvalidInput(
            f"approve: this press would approve {len(chosen):,} items, more than the {cap:,} one press may approve "
            "(what a person can review). Untick or exclude some, or approve them over several presses. "
            "Nothing was started.", {"approve": [f"more than {cap} items"]})
    keys = {c.key for c in chosen}
    return [c.approval for c in chosen], [c.key for c in candidates if c.key not in keys], refused


def approvals_create(*, run: TrainingRun) -> int:
    """Apply what the press approved: each key still flagged, and not marked malicious or closed since."""
    blocked = set(Alert.objects.filter(key__in=[a["key"] for a in run.approved], status__in=Alert.NOT_LEARNABLE)
                  .values_list("key", flat=True)) if run.approved else set()
    created = 0
    for a in run.approved:
        if a["key"] in blocked:
            continue
        script = a.get("script")  # runs pressed before scripts counted carry none: the old, wider meaning
        flagged = ProcessRecord.objects.filter(endpoint__hostname=a["hostname"], name_norm=a["name"], exe_norm=a["exe"],
                                               parent_name=a["parent"], flagged=True, status=ProcessRecord.Status.OPEN)
        if script is not None:
            flagged = flagged.filter(script=script)
        stats = flagged.aggregate(n=Count("id"), first=Min("observed_at"))
        if not stats["n"]:
            continue
        with transaction.atomic():
            Approval.objects.get_or_create(
                hostname=a["hostname"], name=a["name"], exe=a["exe"], parent=a["parent"], script=script,
                defaults={"approved_by": run.triggered_by, "approved_by_name": run.triggered_by_name, "run": run,
                          "observations": stats["n"], "first_seen": stats["first"]},
            )
            flagged.update(status=ProcessRecord.Status.APPROVED)
        created += 1
    return created


def _covered_records(approval: Approval):
    """The records of what an approval covers (with its script, when it has one), whatever their verdict."""
    records = ProcessRecord.objects.filter(
        endpoint__hostname=approval.hostname, name_norm=approval.name, exe_norm=approval.exe,
        parent_name=approval.parent)
    return records if approval.script is None else records.filter(script=approval.script)


def _approved_records(approval: Approval):
    """The records an approval marked approved."""
    return _covered_records(approval).filter(status=ProcessRecord.Status.APPROVED)


REVOKED_REASON = "scored while an approval stood; the approval was revoked"


def approval_revoke(*, actor: Actor, approval_id: int) -> Approval:
    """Withdraw an approval: the next model version no longer learns or honours it (the active one still does).

    Its observations go back to the open flags, so no later training learns them as ordinary: the
    ones it approved, and the ones a model that had learned it let through unflagged since.
    """
    if not (actor.user is not None and actor.user.has_perm("axon.delete_approval")):
        actor.audit("approval.revoked", resource_type="approval", resource_id=approval_id,
                    outcome=AuditEvent.Outcome.DENIED, aggregate=True)
        raise Denied("Only security admins may revoke an approval.")
    with transaction.atomic():
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        key = approval_key(approval.hostname, approval.name, approval.exe, approval.parent, approval.script)
        approved = _approved_records(approval)
        # Since it was first seen, or since the approval if the agent backdated what it sent meanwhile.
        since = Q(observed_at__gte=approval.first_seen or approval.created_at) | Q(
            snapshot__received_at__gte=approval.created_at)
        let_through = _covered_records(approval).filter(since, flagged=False)
        snapshots = set(approved.values_list("snapshot_id", flat=True)) | set(
            let_through.values_list("snapshot_id", flat=True))
        reopened = approved.update(flagged=True, status=ProcessRecord.Status.OPEN)
        reopened += let_through.update(flagged=True, status=ProcessRecord.Status.OPEN, reasons=[REVOKED_REASON])
        _recount(snapshots)
        # Held back from the next default press, or the program that was just revoked is approved again.
        alert, _ = Alert.objects.get_or_create(key=key, defaults={
            "hostname": approval.hostname, "name": approval.name, "exe": approval.exe, "parent": approval.parent})
        if alert.status != Alert.Status.MALICIOUS:
            alert.status, alert.note = Alert.Status.ACKNOWLEDGED, f"approval revoked by {actor_name(actor.user)}"
            alert.updated_by, alert.updated_by_name = actor.user, actor_name(actor.user)
            alert.save()
            AlertChange.objects.create(key=key, status=alert.status, note=alert.note, by=alert.updated_by,
                                       by_name=alert.updated_by_name)
        approval.delete()
    actor.audit("approval.revoked", resource_type="approval", resource_id=approval_id, details={
        "key": key,
        "hostname": approval.hostname,
        "name": approval.name, "exe": approval.exe, "parent": approval.parent, "run_id": approval.run_id,
        "reopened": reopened})
    notifications.approval_revoked(approval, approval_id, actor_name(actor.user), reopened)
    return approval


# --- triage --------------------------------------------------------------------------------


ALERT_ORDERINGS = ("severity", "-last_seen", "-count", "hostname")
ALERT_STATUSES = (*Alert.Status.values, "all")
MAX_FILTER_TEXT = 255


@dataclass(frozen=True)
class AlertQuery:
    """What the alerts list is filtered and ordered by: the API's query parameters, and the page's."""

    status: str = "open"  # one of Alert.Status, "all", or "" for every status but closed (the Live page)
    hostname: str = ""
    risk: str = ""  # "", "low" or "high"
    q: str = ""  # a piece of the name, path, parent, user or script
    since: datetime | None = None  # seen at or after
    until: datetime | None = None  # seen at or before
    ordering: str = "severity"

    @classmethod
    def from_params(cls, params, **given) -> AlertQuery:
        """From a query string; an unknown or malformed value is InvalidInput naming the parameter."""
        def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
            value = params.get(name) or default
            if value not in allowed:
                raise InvalidInput(f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}.",
                                   {name: [f"unknown value: {value[:40]}"]})
            return value

        def text(name: str) -> str:
            value = (params.get(name) or "").strip()
            if len(value) > MAX_FILTER_TEXT:
                raise InvalidInput(f"{name} must be at most {MAX_FILTER_TEXT} characters.", {name: ["too long"]})
            return value

        values = {
            "status": choice("status", ALERT_STATUSES, "open"), "hostname": text("hostname"),
            "risk": choice("risk", ("", "low", "high"), ""), "q": text("q"),
            "since": _query_time(params.get("since"), "since"), "until": _query_time(params.get("until"), "until"),
            "ordering": choice("ordering", ALERT_ORDERINGS, "severity"),
        }
        return cls(**{**values, **given})

    def matches(self, c: Candidate) -> bool:
        if self.status == "" and c.status == Alert.Status.CLOSED or self.status not in ("", "all", c.status):
            return False
        if self.hostname and c.hostname != self.hostname or self.risk and c.risk != self.risk:
            return False
        if self.since and not (c.last_seen and c.last_seen >= self.since):
            return False
        if self.until and not (c.first_seen and c.first_seen <= self.until):
            return False
        needle = self.q.lower()
        return not needle or any(needle in (text or "").lower() for text in (c.name, c.exe, c.parent, c.user, c.script))


def _query_time(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 time, in UTC; naive is taken as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))  # a '+' arrives as a space
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{name} must be an RFC 3339 time such as 2026-11-26T09:00:00Z; got {value[:40]!r}.",
                           {name: ["not a time"]}) from None


def _open_alerts() -> list[Candidate]:
    """Every alert with open flags, each with its severity; the fleet is judged whole, whatever is filtered after."""
    alerts = flagged_candidates(ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN))
    active = ModelVersion.objects.filter(is_active=True).only("metrics").first()
    threshold = active.metrics.get("threshold") if active is not None else None
    now = timezone.now()
    for c in alerts:
        judged = severity(risk=c.risk, risk_reasons=c.risk_reasons, reasons=list(c.reasons), score=c.max_score,
                          threshold=threshold, hosts=c.hosts, last_seen=c.last_seen, now=now)
        c.severity, c.severity_reasons, c.severity_rank = judged.level, judged.reasons, judged.rank
    return alerts


_ORDER = {
    # Open ones first: what still needs a person; then worst first.
    "severity": lambda c: (c.status != Alert.Status.OPEN, c.severity_rank, c.key),
    "-last_seen": lambda c: (-(c.last_seen.timestamp() if c.last_seen else 0), c.key),
    "-count": lambda c: (-c.observations, c.key),
    "hostname": lambda c: (c.hostname, c.name.lower(), c.key),
}


def alerts_search(*, query: AlertQuery, offset: int = 0, limit: int = 50) -> tuple[list[Candidate], int]:
    """Alerts grouped by approval key, filtered and ordered by `query`: (this page, how many match in all)."""
    alerts = sorted((c for c in _open_alerts() if query.matches(c)), key=_ORDER[query.ordering])
    return alerts[offset:offset + limit], len(alerts)


def alerts_list(*, status: str = "", hostname: str = "", offset: int = 0, limit: int = 50) -> tuple[list[Candidate], bool]:
    """Alerts worst first; every status but closed by default ("all" for every one). Returns (page, more)."""
    page, total = alerts_search(query=AlertQuery(status=status, hostname=hostname), offset=offset, limit=limit)
    return page, offset + limit < total


def alerts_overview(*, limit: int = 50) -> dict:
    """The Live page's table (worst first, every status but closed) and the counts its cards show, from one
    grouping: the cards count what the table lists (alert groups), observations second."""
    alerts = _open_alerts()
    listed = sorted((c for c in alerts if c.status != Alert.Status.CLOSED), key=_ORDER["severity"])
    open_ = [c for c in alerts if c.status == Alert.Status.OPEN]
    return {"page": listed[:limit], "more": len(listed) > limit,
            "by_status": dict(Counter(c.status for c in alerts)), "open": len(open_),
            "open_observations": sum(c.observations for c in open_)}


def alert_detail(*, key: str, offset: int = 0, limit: int = 100) -> dict | None:
    """One alert with its observations (newest first, paged), triage history and covering approval; None if unknown."""
    c = next((a for a in _open_alerts() if a.key == key), None)
    if c is None:
        return None
    records = ProcessRecord.objects.filter(
        flagged=True, status=ProcessRecord.Status.OPEN, endpoint__hostname=c.hostname, name_norm=c.name_norm,
        exe_norm=c.exe_norm, parent_name=c.parent, script=c.script).order_by("-observed_at", "-id")
    page = list(records.values("observed_at", "pid", "ppid", "parent_name", "cmdline", "cpu_percent", "memory_rss",
                               "model_number", "snapshot__source")[offset:offset + limit + 1])
    approval = Approval.objects.filter(hostname=c.hostname, name=c.name_norm, exe=c.exe_norm, parent=c.parent).filter(
        Q(script=c.script) | Q(script__isnull=True)).first()
    return {
        "alert": c,
        "observations": [{
            "timestamp": r["observed_at"], "pid": r["pid"], "ppid": r["ppid"], "parent": r["parent_name"],
            "cmdline": r["cmdline"], "cpu_percent": r["cpu_percent"], "memory_rss": r["memory_rss"],
            "model_version": r["model_number"], "source": r["snapshot__source"],
        } for r in page[:limit]],
        "more": len(page) > limit,
        "history": list(AlertChange.objects.filter(key=key)),
        "approval": approval,
    }


def alerts_triage(*, actor: Actor, body) -> list[Candidate]:
    """Set the status (and note) of these keys; audited. Raises Denied or InvalidInput."""
    from axon.serializers import TriageBody, first_error

    if not (actor.user is not None and actor.user.has_perm("axon.triage_alert")):
        actor.audit("alert.triaged", resource_type="alert", outcome=AuditEvent.Outcome.DENIED, aggregate=True)
        raise Denied("You need the Analyst or Security Admin role to triage alerts.")
    serializer = TriageBody(data=body if body not in (None, "") else {})
    if not serializer.is_valid():
        raise InvalidInput(f"{first_error(serializer.errors)} Nothing was changed.", serializer.errors)
    data = serializer.validated_data
    keys = set(data["keys"])
    open_flags = ProcessRecord.objects.filter(flagged=True, status=ProcessRecord.Status.OPEN)
    found = {c.key: c for c in flagged_candidates(open_flags) if c.key in keys}
    before = dict(Alert.objects.filter(key__in=keys).values_list("key", "status"))
    if missing := sorted(keys - set(found) - set(before)):
        raise InvalidInput(f"keys: {len(missing)} key(s) match no alert, for example {missing[0]}. Nothing was changed.",
                           {"keys": [f"unknown: {k}" for k in missing[:20]]})
    # An analyst may not undo a security admin's verdict, nor hide what is most likely an attack.
    overruled = sorted(k for k in keys if before.get(k) == Alert.Status.MALICIOUS != data["status"])
    hidden = sorted(k for k in keys if data["status"] == Alert.Status.CLOSED and k in found and found[k].risk == "high")
    if (overruled or hidden) and not actor.user.has_perm("axon.overrule_alert"):
        actor.audit("alert.triaged", resource_type="alert", resource_id=",".join(sorted(keys))[:64],
                    outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"reason": "overrule", "keys": sorted(keys), "status": data["status"], "malicious": overruled,
                             "high_risk": hidden})
        raise Overruled(
            f"Only a security admin may {'clear a malicious verdict' if overruled else 'close a high-risk alert'} "
            f"({len(overruled or hidden)} of these alerts); nothing was changed. Acknowledge it and add a note instead.")
    user = actor.user if getattr(actor.user, "pk", None) else None
    with transaction.atomic():
        for key in sorted(keys):
            c = found.get(key)
            defaults = {"status": data["status"], "note": data["note"], "updated_by": user,
                        "updated_by_name": actor_name(actor.user)}
            if c is not None:
                defaults.update(hostname=c.hostname, name=c.name_norm, exe=c.exe_norm, parent=c.parent,
                                seen_up_to=c.newest_id)
            Alert.objects.update_or_create(key=key, defaults=defaults)
            AlertChange.objects.create(key=key, status=data["status"], note=data["note"], by=user,
                                       by_name=actor_name(actor.user))
    actor.audit("alert.triaged", resource_type="alert", resource_id=",".join(sorted(keys))[:64],
                details={"keys": sorted(keys), "status": data["status"], "note": data["note"],
                         "before": {k: before.get(k, Alert.Status.OPEN) for k in sorted(keys)}})
    updated = {c.key: c for c in flagged_candidates(open_flags) if c.key in keys}
    return [updated[k] for k in sorted(updated)]


def approvals_revert(*, run: TrainingRun) -> int:
    """Undo the approvals of a run that did not produce a model."""
    reverted = 0
    for approval in Approval.objects.filter(run=run):
        with transaction.atomic():
            _approved_records(approval).filter(flagged=True).update(status=ProcessRecord.Status.OPEN)
            approval.delete()
        reverted += 1
    return reverted


# --- versions --------------------------------------------------------------------------------


def model_version_activate(*, version: int, user=None, request=None, run: TrainingRun | None = None, loaded=None) -> ModelVersion:
    """Make `version` the one active model (roll back or forward), then re-score recent flags with it.

    The file is loaded and verified first: a version that cannot be loaded is never activated.
    A person's activation (run None) is refused (Denied) without the permission; a refusal and a
    failure are audited here, the same at every door.
    """
    from axon.scoring import check_compatible

    def refused(outcome: str, details: dict) -> None:
        audit_record(action="model.activated", actor=user, request=request, resource_type="model_version",
                     resource_id=version, outcome=outcome, aggregate=True, details=details)

    if run is None and not (user is not None and user.has_perm("axon.activate_modelversion")):
        refused(AuditEvent.Outcome.DENIED, {"reason": "missing axon.activate_modelversion"})
        raise Denied("Only security admins may activate a model version.")
    target = ModelVersion.objects.get(version=version)
    try:
        model = loaded if loaded is not None else artifact_load(target.artifact_path, target.sha256,
                                                                version=target.version)
        check_compatible(model)
    except (ArtifactError, ValueError) as exc:
        if run is None:
            refused(AuditEvent.Outcome.FAILURE, {"error": str(exc)})
        raise
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=target.pk).update(is_active=True, activated_at=timezone.now())
    target.refresh_from_db()
    model_cache.reset()
    if run is None:
        audit_record(action="model.activated", actor=user, request=request, resource_type="model_version",
                     resource_id=version, details={"version": version})
        notifications.model_activated(version, actor_name(user))
    flags_rescore(model=model, version=version)
    recent = timezone.now() - timedelta(hours=settings.RESCORE_HOURS)
    if Snapshot.objects.filter(model_number__isnull=True, timestamp__gte=recent).exists():
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
        .exclude(status=ProcessRecord.Status.CLEARED).annotate(**_HOST).only("pk", "snapshot_id", "status", *_OBSERVED)
    )
    if not records:
        return 0
    verdicts = score_with(model, version, _observations(records))
    cleared = [r for r, flagged in zip(records, verdicts.flagged) if not flagged]
    with transaction.atomic():
        for chunk in _chunks([r.pk for r in cleared if r.status == ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(
                flagged=False, status=ProcessRecord.Status.CLEARED, model_number=version)
        for chunk in _chunks([r.pk for r in cleared if r.status != ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(flagged=False, model_number=version)
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
        unscored = Snapshot.objects.filter(model_number__isnull=True, timestamp__gte=recent).order_by("timestamp")
        ids = list(unscored.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        records = list(ProcessRecord.objects.filter(snapshot_id__in=ids).annotate(**_HOST))
        verdicts = score_with(model, version, _observations(records)) if records else None
        flagged = []
        for i, record in enumerate(records):
            assert verdicts is not None  # records is not empty
            if verdicts.flagged[i]:
                record.score, record.flagged, record.reasons = verdicts.scores[i], True, verdicts.reasons[i]
                record.model_number, record.status = version, ProcessRecord.Status.OPEN
                flagged.append(record)
        with transaction.atomic():
            ProcessRecord.objects.filter(snapshot_id__in=ids, flagged__isnull=True).exclude(
                pk__in=[r.pk for r in flagged]
            ).update(flagged=False, model_number=version, status="")
            ProcessRecord.objects.bulk_update(flagged, ["score", "flagged", "reasons", "model_number", "status"], batch_size=500)
            Snapshot.objects.filter(pk__in=ids).update(model_number=version)
            _recount({r.snapshot_id for r in flagged})
        done += len(ids)
    return done


# --- runs ------------------------------------------------------------------------------------


def model_upgrade_retrain() -> TrainingRun | None:
    """Train at once when the active model was built on another feature contract (after an upgrade).

    Such a model cannot score (every process says why on the status endpoint), so until a model
    of this code's contract is trained everything is stored unscored; waiting for the daily
    schedule would leave the fleet unwatched for up to a day. Like a scheduled run it approves
    nothing and coalesces with a run in flight; at most one try an hour, so that a run that fails
    is not repeated every minute.
    """
    from axon.features import FEATURE_VERSION

    active = ModelVersion.objects.filter(is_active=True).only("version", "feature_version").first()
    if active is None or active.feature_version == FEATURE_VERSION:
        return None
    if TrainingRun.objects.filter(created_at__gte=timezone.now() - timedelta(hours=1), reason__startswith="upgrade:").exists():
        return None
    reason = (f"upgrade: the active model v{active.version} was built for feature version "
              f"{active.feature_version}, this code computes version {FEATURE_VERSION}")
    return retrain_request(actor=Actor(door=TrainingRun.Trigger.SCHEDULE), body={"reason": reason}).run


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
        if run.finish(status, message, only_from=[run.status]):
            ended += 1
            audit_record(action=action, actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
                         outcome=AuditEvent.Outcome.FAILURE, details={"message": message, "reaped": True})
            _notify(run)
    return ended


def axon_status() -> dict:
    """What the page and the status API show. A read: runs whose worker died are ended by the
    maintenance task (every minute) and by the next press, never by a GET."""
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

