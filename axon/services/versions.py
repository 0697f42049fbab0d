"""Model versions: activation (roll back or forward) and re-scoring recent flags and unscored snapshots."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from audit.actors import Actor, Denied
from audit.models import AuditEvent
from audit.services import actor_name
from axon import notifications
from axon.models import ModelVersion, TrainingRun
from axon.scoring import check_compatible, model_cache, score_with
from axon.selectors import HOST, OBSERVED, observations
from axon.store import ArtifactError, artifact_load
from telemetry.models import ProcessRecord, Snapshot


def model_version_activate(*, version: int, actor: Actor | None = None, run: TrainingRun | None = None,
                           loaded=None) -> ModelVersion:
    """Make `version` the one active model (roll back or forward), then re-score recent flags with it.

    The file is loaded and verified first: a version that cannot be loaded is never activated.
    A person's activation (`actor`, no `run`) is refused (Denied) without the permission; a refusal,
    a failure and a success are audited here, the same at every door. A run activates what it trained
    (`run`, no actor), audited with the run.
    """
    person = actor if run is None else None

    def refused(outcome: str, details: dict) -> None:
        (person or Actor()).audit("model.activated", resource_type="model_version", resource_id=version,
                                  outcome=outcome, aggregate=True, details=details)

    if run is None and not (actor is not None and actor.can("axon.activate_modelversion")):
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
    if person is not None:
        person.audit("model.activated", resource_type="model_version", resource_id=version, details={"version": version})
        notifications.model_activated(version, actor_name(person.user))
    flags_rescore(model=model, version=version)
    recent = timezone.now() - timedelta(hours=settings.RESCORE_HOURS)
    if Snapshot.objects.filter(model_number__isnull=True, timestamp__gte=recent).exists():
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
        .exclude(status=ProcessRecord.Status.CLEARED).annotate(**HOST).only("pk", "snapshot_id", "status", *OBSERVED)
    )
    if not records:
        return 0
    verdicts = score_with(model, version, observations(records))
    cleared = [r for r, flagged in zip(records, verdicts.flagged) if not flagged]
    with transaction.atomic():
        for chunk in _chunks([r.pk for r in cleared if r.status == ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(
                flagged=False, status=ProcessRecord.Status.CLEARED, model_number=version)
        for chunk in _chunks([r.pk for r in cleared if r.status != ProcessRecord.Status.OPEN]):
            ProcessRecord.objects.filter(pk__in=chunk).update(flagged=False, model_number=version)
        snapshots_recount({r.snapshot_id for r in cleared})
    return len(cleared)


def _chunks(items: list, size: int = 5000):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def snapshots_recount(snapshot_ids) -> None:
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
        records = list(ProcessRecord.objects.filter(snapshot_id__in=ids).annotate(**HOST))
        verdicts = score_with(model, version, observations(records)) if records else None
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
            snapshots_recount({r.snapshot_id for r in flagged})
        done += len(ids)
    return done
