"""django-q2 tasks: thin wrappers around the services."""
from __future__ import annotations

from audit.actors import Actor
from axon import notifications
from axon.models import TrainingRun
from axon.services.press import model_upgrade_retrain, retrain_request
from axon.services.runs import retrain_run, runs_reap
from axon.services.versions import snapshots_score_pending


def retrain_task(run_id: int) -> str:
    run = retrain_run(run_id=run_id)
    return f"run {run.pk}: {run.status}"


def scheduled_retrain_task() -> str:
    """A scheduled retrain: approves nothing, and coalesces with a run already in flight."""
    outcome = retrain_request(actor=Actor(door=TrainingRun.Trigger.SCHEDULE),
                                       body={"reason": "scheduled retrain"})
    return f"run {outcome.run.pk}: {outcome.status}"


def maintenance_task() -> str:
    """Reap runs whose worker died, retrain after an upgrade left no usable model, and score snapshots
    stored while no model could."""
    reaped = runs_reap()
    upgrade = model_upgrade_retrain()
    scored = snapshots_score_pending()
    return f"reaped {reaped} run(s), scored {scored} snapshot(s)" + (f", upgrade run {upgrade.pk}" if upgrade else "")


def alerts_notify_task(groups: list[dict]) -> str:
    return f"{notifications.alerts_notify(groups)} alert message(s) of {len(groups)} group(s)"
