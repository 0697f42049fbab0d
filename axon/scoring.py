"""Scoring at ingestion with the active model, cached per process and hot-swapped.

Every web and worker process keeps the active model in memory and asks the
database at most every MODEL_REFRESH_SECONDS which version is active, so a new
version (or a rollback) is in use everywhere within about a second, without a
restart. A version whose file cannot be loaded is not used: the last good model
keeps serving, and the reason is kept for the status endpoint.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
from django.conf import settings

from telemetry.scoring import Observation, Verdicts

logger = logging.getLogger(__name__)


class ModelCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.model = None
        self.version: int | None = None
        self.sha256: str | None = None
        self.checked_at = float("-inf")
        self.error = ""  # why the active version is not the one serving, if it is not

    def get(self):
        """(version, model) of the model to score with, or (None, None)."""
        if time.monotonic() - self.checked_at >= settings.MODEL_REFRESH_SECONDS:
            with self._lock:
                if time.monotonic() - self.checked_at >= settings.MODEL_REFRESH_SECONDS:
                    self._refresh()
        return self.version, self.model

    def _refresh(self) -> None:
        from axon.models import ModelVersion
        from axon.store import ArtifactError, artifact_load

        self.checked_at = time.monotonic()
        row = ModelVersion.objects.filter(is_active=True).values("version", "artifact_path", "sha256").first()
        if row is None:
            self.model, self.version, self.sha256 = None, None, None
            self.error = ""
            return
        if row["version"] == self.version and row["sha256"] == self.sha256:
            return
        try:
            model = artifact_load(row["artifact_path"], row["sha256"], version=row["version"])
            check_compatible(model)
        except (ArtifactError, ValueError) as exc:
            message = f"Active model v{row['version']} cannot be used: {exc}"
            if message != self.error:
                logger.error("%s", message)
            self.error = message
            return  # the last good model, if any, keeps serving
        self.model, self.version, self.sha256, self.error = model, row["version"], row["sha256"], ""
        logger.info("Scoring with model v%s", self.version)


def check_compatible(model) -> None:
    """The loaded object must be a detector built on this code's feature contract (ValueError otherwise)."""
    if not callable(getattr(model, "check_compatible", None)):
        raise ValueError("the file does not hold a Voltaxe detector model")
    model.check_compatible()


model_cache = ModelCache()


def to_batch(rows: list[Observation]):
    from axon.detector.features import ObservationBatch

    return ObservationBatch(
        host=[r.host for r in rows],
        os=[r.os for r in rows],
        name=[r.name for r in rows],
        exe=[r.exe for r in rows],
        parent=[r.parent for r in rows],
        user=[r.user for r in rows],
        hour=np.fromiter((r.hour for r in rows), dtype=np.int64, count=len(rows)),
        cpu=np.fromiter((np.nan if r.cpu is None else r.cpu for r in rows), dtype=np.float64, count=len(rows)),
        mem=np.fromiter((np.nan if r.mem_mib is None else r.mem_mib for r in rows), dtype=np.float64, count=len(rows)),
        script=[r.script for r in rows],
        args=[r.args for r in rows],
        parent_gone=[r.parent_gone for r in rows],
        names_only=[r.names_only for r in rows],
        prior_streak=np.fromiter((r.prior_streak for r in rows), dtype=np.int64, count=len(rows)),
        snapshot=np.fromiter((r.snapshot for r in rows), dtype=np.int64, count=len(rows)),
    )


def score_with(model, version: int | None, rows: list[Observation]) -> Verdicts:
    result = model.score(to_batch(rows))
    return Verdicts(
        model_number=version,
        scores=np.round(np.asarray(result.scores, dtype=np.float64), 4).tolist(),
        flagged=np.asarray(result.flagged, dtype=bool).tolist(),
        reasons=[list(r) if f else [] for r, f in zip(result.reasons, result.flagged)],
        streaks=(np.zeros(len(rows), dtype=np.int64) if result.streak is None else result.streak).tolist(),
        reborn=(np.zeros(len(rows), dtype=bool) if result.reborn is None else result.reborn).tolist(),
    )


def observations_score(rows: list[Observation]) -> Verdicts:
    """The active model's verdict on each row; model_number None when no model can score."""
    version, model = model_cache.get()
    if model is None or not rows:
        return Verdicts(model_number=version if model is not None else None)
    try:
        return score_with(model, version, rows)
    except Exception:
        # Never lose a snapshot over a scoring fault: it is stored unscored and scored later.
        logger.exception("Scoring with model v%s failed; storing unscored", version)
        model_cache.error = f"Scoring with model v{version} failed; snapshots are stored unscored until it is fixed."
        return Verdicts(model_number=None)
