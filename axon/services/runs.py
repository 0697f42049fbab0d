"""The run in the worker: claim it, run the body with a heartbeat and a deadline, finish it; and the reaper."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from axon import notifications
from axon.models import ModelVersion, TrainingRun
from axon.services.approvals import approvals_revert
from axon.services.publish import Rejected, train_and_publish

Status = TrainingRun.Status

logger = logging.getLogger(__name__)


class RunTimedOut(Exception):
    pass


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


class Progress:
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
    progress = Progress(run, time.monotonic() + settings.RETRAIN_TIMEOUT_SECONDS)
    started = time.monotonic()
    try:
        version = train_and_publish(run, progress)
    except RunTimedOut as exc:
        _finish(run, Status.TIMED_OUT, str(exc), progress)
    except Rejected as exc:
        _finish(run, Status.REJECTED, str(exc), progress)
    except Exception as exc:
        logger.exception("Run %s failed", run.pk)
        _finish(run, Status.FAILED, f"Training failed: {exc}. The previous model keeps serving.", progress)
    else:
        held = bool(version.gate_reason)
        message = (
            f"Model v{version.version} trained but held back: {version.gate_reason} "
            f"The previous model keeps serving; a security admin can activate v{version.version} anyway."
            if held else
            f"Model v{version.version} is active: learned from {version.records:,} records of "
            f"{version.processes:,} processes on {version.hosts} hosts in {time.monotonic() - started:.1f} s."
        )
        _finish(run, Status.SUCCEEDED, message, progress, version=version)
    finally:
        heartbeat.stopped.set()
    run.refresh_from_db()
    return run


def _finish(run: TrainingRun, status: str, message: str, progress: Progress, *, version: ModelVersion | None = None) -> None:
    """End the run; its audit action is "retrain." + its status, a success only when it succeeded."""
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
    outcome = AuditEvent.Outcome.SUCCESS if status == Status.SUCCEEDED else AuditEvent.Outcome.FAILURE
    audit_record(action=f"retrain.{status}", actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
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
            status = Status.FAILED
            message = (f"No worker picked this run up within {int((timeout + grace).total_seconds())} s; "
                       "check that the worker (manage.py qcluster) is running. The previous model keeps serving.")
        elif run.started_at and run.started_at < now - timeout:
            status = Status.TIMED_OUT
            message = (f"Training did not finish within {settings.RETRAIN_TIMEOUT_SECONDS} s and was stopped. "
                       "The previous model keeps serving.")
        else:
            status = Status.FAILED
            message = (f"The worker stopped responding during '{run.stage}' (no heartbeat for "
                       f"{settings.RETRAIN_REAP_GRACE_SECONDS} s); it was probably killed. The previous model keeps serving.")
        if run.finish(status, message, only_from=[run.status]):
            ended += 1
            audit_record(action=f"retrain.{status}", actor=run.triggered_by, resource_type="training_run", resource_id=run.pk,
                         outcome=AuditEvent.Outcome.FAILURE, details={"message": message, "reaped": True})
            _notify(run)
    return ended
