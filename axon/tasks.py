"""django-q2 tasks: thin wrappers around the services."""
from __future__ import annotations

from axon import notifications, services
from axon.models import TrainingRun


def retrain_task(run_id: int) -> str:
    run = services.retrain_run(run_id=run_id)
    return f"run {run.pk}: {run.status}"


def scheduled_retrain_task() -> str:
    """A scheduled retrain: approves nothing, and coalesces with a run already in flight."""
    outcome = services.retrain_request(actor=services.Actor(door=TrainingRun.Trigger.SCHEDULE),
                                       body={"reason": "scheduled retrain"})
    return f"run {outcome.run.pk}: {outcome.status}"


def maintenance_task() -> str:
    """Reap runs whose worker died, retrain after an upgrade left no usable model, and score snapshots
    stored while no model could."""
    reaped = services.runs_reap()
    upgrade = services.model_upgrade_retrain()
    scored = services.snapshots_score_pending()
    return f"reaped {reaped} run(s), scored {scored} snapshot(s)" + (f", upgrade run {upgrade.pk}" if upgrade else "")


def alerts_notify_task(groups: list[dict]) -> str:
    return f"{notifications.alerts_notify(groups)} alert message(s) of {len(groups)} group(s)"
