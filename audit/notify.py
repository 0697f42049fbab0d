"""The one call the apps make to tell people what happened: `emit(kind, ...)`.

audit is the lowest app: axon and telemetry call in here, never the reverse. A message is
built here (the body API.md documents under "What Voltaxe sends") and handed to the queue once
the caller's transaction commits, so nothing is sent about what was rolled back, and the
caller never waits on a receiver: the work it adds is one broker write, and none at all while
no channel is enabled. The worker fans it out to the channels that want it
(audit.notifications.services.messages_dispatch).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

KINDS = (
    "alert.new", "alert.spread", "host.flood", "host.late", "host.back", "panic.pressed", "run.failed", "run.timed_out",
    "run.rejected", "model.activated", "approval.revoked", "agent.created", "agent.revoked", "agent.rebound",
)
# What Voltaxe itself sends besides the kinds above; a channel cannot subscribe to them, it always gets them.
OWN_KINDS = ("digest", "test")
SEVERITIES = ("low", "medium", "high")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def message(kind: str, *, summary: str, severity: str = "medium", url: str = "", group: str = "",
            host: str = "", user: str = "", process: dict | None = None, details: dict | None = None,
            at: datetime | None = None) -> dict:
    """The webhook body (API.md "What Voltaxe sends"), ECS field names where ECS has them.

    `url` is a path on this server (made absolute with VOLTAXE_URL when sent); `group` is the alert
    group storm control counts by (not sent). Never put a key, token or secret in here.
    """
    if kind not in KINDS + OWN_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    body: dict = {"id": uuid.uuid4().hex, "kind": kind, "at": (at or timezone.now()).isoformat().replace("+00:00", "Z"),
                  "summary": summary, "url": url, "event": {"severity": severity}}
    if host:
        body["host"] = {"name": host}
    if user:
        body["user"] = {"name": user}
    if process:
        body["process"] = process
    body["details"] = details or {}
    if group:
        body["group"] = group
    return body


def emit(kind: str, **fields) -> None:
    """Send a message of `kind` to every channel that wants it, after the current transaction commits."""
    messages_emit([message(kind, **fields)])


def messages_emit(messages: list[dict]) -> None:
    """Several messages in one queued task (one snapshot's new alert groups)."""
    if messages:
        transaction.on_commit(lambda: _enqueue(messages))


def _enqueue(messages: list[dict]) -> None:
    task_after_commit("audit.tasks.notify_dispatch_task", messages, now=True)


def task_after_commit(func: str, *args, now: bool = False) -> None:
    """Queue `func(*args)` once the transaction commits, if any channel is enabled: for an app that must first
    work out what to say in the worker (axon's new alert groups), so that the caller pays one broker write."""
    from django_q.tasks import async_task

    from audit.models import Channel

    def send() -> None:
        try:
            if Channel.objects.filter(enabled=True).exists():
                async_task(func, *args, task_name=f"notify: {func.rsplit('.', 1)[-1]}")
        except Exception:
            # A broker outage loses a message, never the action that caused it.
            logger.exception("Could not queue the notification task %s", func)

    if now:
        send()
    else:
        transaction.on_commit(send)
