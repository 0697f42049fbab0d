"""The promotion gate: a candidate that flags much more of recent ordinary data than the active model is held back."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.utils import timezone

from axon.detector.gate import gate_judge
from axon.models import ModelVersion
from axon.scoring import score_with
from axon.selectors import HOST, OBSERVED, observations
from axon.services.window import TRAINABLE
from axon.store import artifact_load
from telemetry.models import ProcessRecord
from telemetry.scoring import Observation

logger = logging.getLogger(__name__)


RECENT_EVAL_HOURS = 24
# Enough to resolve a 0.005 % flag rate, far finer than the gate's margins; every row is scored
# twice at each press (the candidate and the active model), 1.6 s for 50,000 at a million records.
RECENT_EVAL_LIMIT = 20_000


def _recent_ordinary(*, limit: int) -> list[Observation]:
    since = timezone.now() - timedelta(hours=RECENT_EVAL_HOURS)
    # Named rows, not model instances: 50,000 of them at every press.
    records = (
        ProcessRecord.objects.filter(observed_at__gte=since).filter(TRAINABLE).annotate(**HOST)
        .order_by("-observed_at").values_list(*OBSERVED, *HOST, named=True)[:limit]
    )
    return observations(records)


def _flags_by_host(model, rows: list[Observation]) -> Counter[str]:
    if not rows:
        return Counter()
    verdicts = score_with(model, 0, rows)
    return Counter(r.host for r, f in zip(rows, verdicts.flagged) if f)


def gate_check(model, active: ModelVersion | None) -> tuple[str, dict]:
    """(why the candidate is held back, or "", its metrics with the recent flag rates), against the active model."""
    metrics = dict(getattr(model, "stats", {}) or {})
    recent = _recent_ordinary(limit=RECENT_EVAL_LIMIT)
    candidate_flags = _flags_by_host(model, recent)
    candidate_rate = sum(candidate_flags.values()) / len(recent) if recent else 0.0
    metrics["recent_flag_rate"] = candidate_rate
    metrics["recent_rows"] = len(recent)
    if active is None or not recent:
        return "", metrics
    try:
        active_model = artifact_load(active.artifact_path, active.sha256, version=active.version)
        active_flags = _flags_by_host(active_model, recent)
    except Exception as exc:  # an unloadable active model cannot veto its replacement
        logger.warning("Active model v%s could not be loaded for comparison: %s", active.version, exc)
        metrics["active_recent_flag_rate"] = None
        return "", metrics
    metrics["active_recent_flag_rate"] = sum(active_flags.values()) / len(recent)
    held, worst = gate_judge(candidate_flags, active_flags, Counter(r.host for r in recent))
    if held:
        return (f"it would flag {candidate_rate:.2%} of the last {RECENT_EVAL_HOURS} h of ordinary data, "
                f"against {metrics['active_recent_flag_rate']:.2%} for the active v{active.version}; "
                f"most of the difference is on {', '.join(worst)}."), metrics
    if worst:
        metrics["gate_outlier_host"] = worst[0]  # it alone would have held the model back
    return "", metrics
