"""A small fleet with history, and a first model trained on it, for tests that need a real model."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.actors import Actor
from axon.services.press import retrain_request
from axon.services.runs import retrain_run
from telemetry.demo import demo_payloads
from telemetry.ingest import snapshot_ingest_batch


def ingest(payloads) -> list[dict]:
    results, batch = [], []
    for payload in payloads:
        batch.append(payload)
        if len(batch) == 100:
            results += snapshot_ingest_batch(payloads=batch)
            batch = []
    if batch:
        results += snapshot_ingest_batch(payloads=batch)
    return results


def history(days: int = 2, recent_hours: int = 2):
    """Ingest `days` of ordinary history ending `recent_hours` ago; returns the split time."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    split = now - timedelta(hours=recent_hours)
    ingest(demo_payloads(start=split - timedelta(days=days), end=split, novelties=False))
    return split


def recent(split, *, novelties: bool = True) -> list[dict]:
    """The last hours up to now, with the new application and the intruder when `novelties`."""
    now = timezone.now()
    return ingest(demo_payloads(start=split, end=now - timedelta(minutes=1), novelties=novelties))


def train(user=None, door="command", exclude=(), reason=""):
    """A press carried out in this process (the worker's code path, without the queue).

    At the operator's door by default, so that setting up history is never rate limited; the
    people's doors (API, page, admin) are tested through HTTP.
    """
    outcome = retrain_request(actor=Actor(user=user, door=door),
                              body={"exclude": list(exclude), "reason": reason}, enqueue=False)
    return retrain_run(run_id=outcome.run.pk)
