"""Notification tests: queued work runs in this process, and a webhook receiver subscribed to everything."""
from __future__ import annotations

import pytest

from audit.models import Channel
from audit.notifications import services
from tests.audit.receivers import WebhookReceiver
from tests.axon.test_queue import broker_env, worker  # noqa: F401  (a qcluster on the ORM broker and on Redis)


@pytest.fixture
def sync_queue(monkeypatch, settings, django_capture_on_commit_callbacks):
    """Queued work runs at once, in this process (django-q2's sync mode), once the transaction commits.

    Returns `committed()`: a context manager inside which an action's commit runs its on_commit work.
    """
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    settings.NOTIFY_TIMEOUT_SECONDS = 0.5

    def committed():
        return django_capture_on_commit_callbacks(execute=True)

    return committed


@pytest.fixture
def hook(db):
    """A webhook channel for every kind and severity, with its receiver."""
    with WebhookReceiver() as receiver:
        receiver.channel = services.channel_create(actor=None, data={
            "name": "soc", "kind": "webhook", "target": receiver.url, "events": ["*"], "min_severity": "low"})[0]
        yield receiver


def channel(kind: str, target: str, **extra) -> Channel:
    data = {"name": f"{kind}-{Channel.objects.count()}", "kind": kind, "target": target, "events": ["*"], **extra}
    return services.channel_create(actor=None, data=data)[0]
