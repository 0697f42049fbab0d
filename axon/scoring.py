"""Scoring at ingestion with the active model, cached per process and hot-swapped.

Every web and worker process keeps the active model in memory and asks the
database at most every MODEL_REFRESH_SECONDS which version is active, so a new
version (or a rollback) is in use everywhere within about a second, without a
restart. A version whose file cannot be loaded is not used: the last good model
keeps serving, and the reason is kept for the status endpoint.

A model carries the approvals it was trained with; one revoked since stops being honoured by the
serving model at the same refresh, not at the next version: what the revoked program does meanwhile is
flagged at ingestion, so no later training learns it as ordinary data.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from axon.detector.approved import ApprovedSet
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
        self.approvals_state: tuple | None = None  # (count, newest id) of the approvals table when last applied

    def get(self):
        """(version, model) of the model to score with, or (None, None)."""
        if time.monotonic() - self.checked_at >= settings.MODEL_REFRESH_SECONDS:
            with self._lock:
                if time.monotonic() - self.checked_at >= settings.MODEL_REFRESH_SECONDS:
                    self._refresh()
        return self.version, self.model

    def _refresh(self) -> None:
        self._refresh_version()
        self._refresh_approvals()

    def _refresh_approvals(self) -> None:
        """Drop from the serving model the approvals revoked since it was trained (new ones wait for a new model)."""
        from axon.models import Approval

        if self.model is None or not getattr(self.model, "approved", None):
            return
        state = tuple(Approval.objects.aggregate(n=Count("id"), top=Max("id")).values())
        if state == self.approvals_state:
            return
        standing = set(Approval.objects.values_list("hostname", "name", "exe", "parent", "script"))
        if revoked := self.model.approved - standing:
            # The model also learned what it approved, as ordinary data: not honouring the approval is not
            # enough, what it covered is flagged outright until a model trained without it serves.
            self.model.approved = self.model.approved - revoked
            self.model.approvals = ApprovedSet(self.model.approved)
            self.model.revoked = ApprovedSet(getattr(self.model, "revoked", ApprovedSet(frozenset())).keys | revoked)
            logger.info("Model v%s no longer honours %d revoked approval(s)", self.version, len(revoked))
        self.approvals_state = state

    def _refresh_version(self) -> None:
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
        self.approvals_state = None
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


REVOKED = "its approval was revoked: the model serving now learned it as normal, the next one will not"


def score_with(model, version: int | None, rows: list[Observation]) -> Verdicts:
    batch = to_batch(rows)
    result = model.score(batch)
    flagged = np.asarray(result.flagged, dtype=bool).tolist()
    reasons = [list(r) if f else [] for r, f in zip(result.reasons, flagged)]
    if (revoked := getattr(model, "revoked", None)) is not None:
        for i in np.flatnonzero(revoked.mask(batch)).tolist():
            flagged[i] = True
            reasons[i].append(REVOKED)
    return Verdicts(
        model_number=version,
        scores=np.round(np.asarray(result.scores, dtype=np.float64), 4).tolist(),
        flagged=flagged,
        reasons=reasons,
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
