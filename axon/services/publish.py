"""The run's body: approve, aggregate the window, train, gate, save the version and activate it."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import sklearn
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from axon.detector.features import FEATURE_NAMES, FEATURE_VERSION
from axon.detector.training import InsufficientData, TrainParams, train
from axon.models import Approval, ModelArtifact, ModelVersion, TrainingRun
from axon.services.approvals import approvals_create
from axon.services.gate import gate_check
from axon.services.versions import model_version_activate
from axon.services.window import window_aggregate
from axon.store import artifact_write


class Rejected(Exception):
    pass


def train_and_publish(run: TrainingRun, progress: Callable[..., None]) -> ModelVersion:
    """Approve what the press chose, train on the window, gate the candidate, save it, and activate it unless held."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if run.approve:
        progress("approving", 10, f"Approving the {len(run.approved)} item(s) chosen at the press")
        approved = approvals_create(run=run)
        progress("approving", 15, f"Approved {approved} item(s) as ordinary; excluded: {', '.join(run.exclude) or 'none'}")
    until = timezone.now()
    since = until - timedelta(days=settings.TRAINING_WINDOW_DAYS)
    progress("aggregating", 20, f"Aggregating {settings.TRAINING_WINDOW_DAYS} days of telemetry in the database")
    window, counts = window_aggregate(since=since, until=until)
    progress("training", 45, f"{counts['records']:,} records in {len(window.combos):,} combinations on {counts['hosts']} hosts")
    params = TrainParams(min_records=settings.MIN_TRAINING_RECORDS, min_processes=settings.MIN_TRAINING_PROCESSES)
    t0 = time.monotonic()
    try:
        model = train(window, approved=frozenset(Approval.objects.values_list("hostname", "name", "exe", "parent", "script")),
                      params=params)
    except InsufficientData as exc:
        raise Rejected(f"Not enough data to train: {exc}") from None
    training_seconds = time.monotonic() - t0
    progress("evaluating", 70, f"Trained in {training_seconds:.1f} s; comparing with the active model on recent data")
    gate_reason, metrics = gate_check(model, active)
    progress("saving", 80, "Saving the model file")
    version = _version_save(model, run=run, counts=counts, until=until, params=params, metrics=metrics,
                            training_seconds=training_seconds, gate_reason=gate_reason)
    if not gate_reason:
        progress("activating", 88, f"Activating v{version.version}")
        model_version_activate(version=version.version, run=run, loaded=model)
        progress("rescoring", 95, "Re-scoring recent flags with the new model")
    return version


def _version_save(model, *, run: TrainingRun, counts: dict, until, params: TrainParams, metrics: dict,
                  training_seconds: float, gate_reason: str) -> ModelVersion:
    """The artifact file, then the version row and its copy of the artifact in one transaction."""
    # One run at a time (the single-flight constraint), so the next number is free.
    number = (ModelVersion.objects.aggregate(n=Max("version"))["n"] or 0) + 1
    path, sha256, size, data = artifact_write(model, version=number)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            version=number,
            trained_at=timezone.now(), window_start=counts["window_start"], window_end=until,
            data_until=counts["data_until"], records=counts["records"], processes=counts["processes"], hosts=counts["hosts"],
            feature_version=FEATURE_VERSION, feature_names=list(FEATURE_NAMES),
            parameters={k: v for k, v in vars(params).items() if isinstance(v, (int, float, str, bool, type(None)))},
            metrics=jsonable(metrics), sklearn_version=sklearn.__version__, artifact_path=path, sha256=sha256,
            size_bytes=size, training_seconds=round(training_seconds, 3), gate_reason=gate_reason, run=run,
        )
        ModelArtifact.objects.create(model_version=version, data=data)
    return version


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
