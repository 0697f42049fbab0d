"""The panic button: check, rate-limit, record and queue a press, or join the run in flight."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from audit.actors import Actor, Denied, InvalidInput
from audit.models import AuditEvent
from audit.services import actor_name, audit_record
from axon import notifications
from axon.detector.features import FEATURE_VERSION
from axon.models import ModelVersion, RetrainPress, TrainingRun
from axon.selectors import retrain_estimate_seconds
from axon.serializers import RetrainBody, first_error
from axon.services.publish import jsonable
from axon.services.runs import runs_reap
from axon.services.selection import press_selection
from voltaxe.rates import parse_rate

Status = TrainingRun.Status

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    def __init__(self, retry_after: int, scope: str):
        self.retry_after = retry_after
        self.scope = scope
        who = "you have pressed" if scope == "user" else "the team has pressed"
        super().__init__(
            f"Retrain limit reached: {who} the panic button too often. Try again in {retry_after} seconds."
        )


@dataclass
class RetrainOutcome:
    run: TrainingRun
    started: bool  # False: joined the run already in flight

    @property
    def status(self) -> str:
        return "training_started" if self.started else "already_running"


# Doors where a person presses: these are rate-limited. The command is the operator's shell; the schedule is no one.
PERSON_DOORS = (TrainingRun.Trigger.DASHBOARD, TrainingRun.Trigger.API, TrainingRun.Trigger.ADMIN)


def retrain_request(*, actor: Actor, body=None, enqueue: bool = True) -> RetrainOutcome:
    """Check, record and queue a press, or join the run in flight; every outcome is audited the same for every door.

    body: {"reason", "exclude", "approve"} (see RetrainBody). What the run approves is
    fixed here, at press time: the keys listed in `approve` that are still candidates,
    or without `approve` the candidates with `default` true; never a malicious or closed
    key, nothing flagged after this moment. Raises Denied, InvalidInput or RateLimited;
    none of them uses up a limit.
    """
    scheduled = actor.door == TrainingRun.Trigger.SCHEDULE
    data = _press_body(actor, body)
    reason = data["reason"].strip()
    exclude = sorted({name.strip() for name in data["exclude"] if name.strip()})
    details = {"trigger": actor.door, "reason": reason, "exclude": exclude}
    if actor.door in PERSON_DOORS:
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
        return _join(actor, in_flight, details)
    try:
        approved, unticked, refused = ([], [], []) if scheduled else press_selection(
            approve=data["approve"], exclude=exclude, confirmed=data["confirm_high_risk"])
    except InvalidInput as exc:
        actor.audit("retrain.invalid", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "errors": jsonable(exc.errors)})
        raise
    user = _person(actor)
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=actor.door, triggered_by=user,
                triggered_by_name=actor_name(actor.user) or ("scheduler" if scheduled else ""),
                reason=reason, exclude=exclude, approve=not scheduled, approved=approved, message="Waiting for a worker.",
            )
            if user is not None:
                RetrainPress.objects.create(user=user, run=run)
    except IntegrityError:
        running = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
        if running is None:  # it finished between our insert and this read; press again
            return retrain_request(actor=actor, body=body, enqueue=enqueue)
        return _join(actor, running, details)
    actor.audit("retrain.started", resource_type="training_run", resource_id=run.pk, details={
        **details, "approve_given": data["approve"] is not None, "approved": [a["key"] for a in approved],
        "unticked": unticked, "not_approvable": refused})
    notifications.press_pressed(run, unticked, refused)
    if enqueue:
        _enqueue(run)
    return RetrainOutcome(run=run, started=True)


def _person(actor: Actor):
    return actor.user if getattr(actor.user, "pk", None) else None


def _join(actor: Actor, run: TrainingRun, details: dict) -> RetrainOutcome:
    if (user := _person(actor)) is not None:
        RetrainPress.objects.create(user=user, run=run, joined=True)
    actor.audit("retrain.joined", resource_type="training_run", resource_id=run.pk, details=details)
    return RetrainOutcome(run=run, started=False)


def _press_body(actor: Actor, body) -> dict:
    """The press's validated body, once the actor may press; a refusal is audited and raised."""
    if actor.door in PERSON_DOORS and not actor.can("axon.trigger_retrain"):
        actor.audit("retrain.denied", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "reason": "missing axon.trigger_retrain"})
        raise Denied("Only security admins may retrain the model.")
    serializer = RetrainBody(data={} if body in (None, "") else body)
    if not serializer.is_valid():
        detail = f"{first_error(serializer.errors)} Nothing was started."
        actor.audit("retrain.invalid", resource_type="training_run", outcome=AuditEvent.Outcome.DENIED, aggregate=True,
                    details={"trigger": actor.door, "errors": jsonable(serializer.errors)})
        raise InvalidInput(detail, serializer.errors)
    return serializer.validated_data


def _in_flight_after_reaping() -> TrainingRun | None:
    # Most presses during a run join it: one read answers them, and only then is it worth
    # checking whether that run's worker died.
    in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    if in_flight is not None and runs_reap():
        in_flight = TrainingRun.objects.filter(status__in=TrainingRun.IN_FLIGHT).first()
    return in_flight


def _rate_limit_wait(user) -> tuple[int, str] | None:
    """Sliding windows over what was recorded: (seconds to wait, scope) when over a limit.

    Per user, the presses that went through (started a run or joined one); for the team, the
    runs people started. Both are rows written with the press, never its audit event: an audit
    write that failed is swallowed, and would have let that press go uncounted. A limit means
    "N in any period", not "N per clock window", and a refused press (denied, invalid,
    limited) uses nothing up.
    """
    now = timezone.now()
    for scope, rate, rows in (("user", settings.RETRAIN_USER_RATE, RetrainPress.objects.filter(user=user)),
                              ("global", settings.RETRAIN_GLOBAL_RATE, TrainingRun.objects.filter(trigger__in=PERSON_DOORS))):
        limit, period = parse_rate(rate)
        recent = list(rows.filter(created_at__gt=now - period).order_by("-created_at")
                      .values_list("created_at", flat=True)[:limit])
        if len(recent) >= limit:
            # The window frees up when the oldest of the last `limit` runs leaves it.
            return max(1, math.ceil((recent[-1] + period - now).total_seconds())), scope
    return None


def _enqueue(run: TrainingRun) -> None:
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


def model_upgrade_retrain() -> TrainingRun | None:
    """Train at once when the active model was built on another feature contract (after an upgrade).

    Such a model cannot score (every process says why on the status endpoint), so until a model
    of this code's contract is trained everything is stored unscored; waiting for the daily
    schedule would leave the fleet unwatched for up to a day. Like a scheduled run it approves
    nothing and coalesces with a run in flight; at most one try an hour, so that a run that fails
    is not repeated every minute.
    """
    active = ModelVersion.objects.filter(is_active=True).only("version", "feature_version").first()
    if active is None or active.feature_version == FEATURE_VERSION:
        return None
    if TrainingRun.objects.filter(created_at__gte=timezone.now() - timedelta(hours=1), reason__startswith="upgrade:").exists():
        return None
    reason = (f"upgrade: the active model v{active.version} was built for feature version "
              f"{active.feature_version}, this code computes version {FEATURE_VERSION}")
    return retrain_request(actor=Actor(door=TrainingRun.Trigger.SCHEDULE), body={"reason": reason}).run
