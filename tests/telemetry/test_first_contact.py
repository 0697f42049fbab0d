"""Concurrent first contact: many clients introduce the same new hosts at once, through a real multi-worker server.

A site coming online, or a fleet behind a relay, sends batches that create the same hosts in
different orders; on PostgreSQL that used to deadlock on the hostname index and answer 503.
"""
from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone

from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from tests.harness import Gunicorn

HOSTS = [f"first-contact-{i:02d}" for i in range(40)]
PROCESSES = [{"name": "systemd", "pid": 1}, {"name": "sshd", "pid": 700, "ppid": 1}, {"name": "bash", "pid": 900, "ppid": 700}]
BATCH = "/api/telemetry/snapshots/batch/"


def _snapshot(hostname: str, minutes_ago: int) -> dict:
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {"hostname": hostname, "timestamp": at.isoformat().replace("+00:00", "Z"), "os": "linux", "processes": PROCESSES}


def _relay_key() -> str:
    # One key for the whole fleet, as a relay forwards it.
    return AgentKey.objects.create_key(name="first-contact-relay", scope=AgentKey.Scope.RELAY)[1]


def _post_all(server: Gunicorn, key: str, batches_per_client: list[list[list[dict]]]) -> list[tuple[int, dict]]:
    """Each client posts its batches in turn; all clients start together."""
    headers = {"Authorization": f"Api-Key {key}"}
    start = threading.Barrier(len(batches_per_client))

    def client(batches):
        start.wait()
        return [server.request("POST", BATCH, batch, headers) for batch in batches]

    with ThreadPoolExecutor(len(batches_per_client)) as pool:
        return [answer for answers in pool.map(client, batches_per_client) for answer in answers]


def _assert_all_stored(answers: list[tuple[int, dict]], sent: set[tuple[str, str]]) -> None:
    failures = [(code, body) for code, body in answers if code != 201]
    assert failures == [], f"{len(failures)} of {len(answers)} batches failed, first: {failures[:1]}"
    items = [item for _, body in answers for item in body["results"]]
    assert [item for item in items if "error" in item] == []
    assert Endpoint.objects.filter(hostname__in=HOSTS).count() == len({h for h, _ in sent})
    # Every snapshot exactly once: answers for the same (host, time) name the same stored snapshot.
    ids = {(item["hostname"], item["snapshot_id"]) for item in items}
    assert len(ids) == len(sent) == Snapshot.objects.count()
    assert ProcessRecord.objects.count() == len(sent) * len(PROCESSES)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_clients_introducing_the_same_new_hosts_in_different_orders_all_succeed(subprocess_env):
    key = _relay_key()
    rng = random.Random(9)
    clients, sent = [], set()
    for c in range(8):
        batches = []
        for b in range(8):
            hosts = HOSTS[:]
            rng.shuffle(hosts)
            batch = [_snapshot(h, minutes_ago=c * 8 + b) for h in hosts]  # each (host, time) from one client only
            sent |= {(s["hostname"], s["timestamp"]) for s in batch}
            batches.append(batch)
        clients.append(batches)

    with Gunicorn(subprocess_env, workers=4) as server:
        answers = _post_all(server, key, clients)

    assert len(answers) == 64
    _assert_all_stored(answers, sent)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_fleet_replayed_by_two_clients_is_stored_once(subprocess_env):
    key = _relay_key()
    rng = random.Random(12)
    fleet = [_snapshot(h, minutes_ago=5 * t) for t in range(4) for h in HOSTS]
    batches = [fleet[i:i + 20] for i in range(0, len(fleet), 20)]
    replay = batches[:]
    rng.shuffle(replay)
    replay = [rng.sample(batch, len(batch)) for batch in replay]

    with Gunicorn(subprocess_env, workers=4) as server:
        answers = _post_all(server, key, [batches, replay])

    assert len(answers) == 2 * len(batches)
    _assert_all_stored(answers, {(s["hostname"], s["timestamp"]) for s in fleet})


class _Deadlock(Exception):
    pgcode = "40P01"  # what psycopg2 reports when PostgreSQL picks this transaction as the deadlock victim


def _deadlocking(monkeypatch, times: int) -> list[int]:
    """The process-record insert fails `times` times the way a deadlock victim does, then works."""
    from django.db import OperationalError

    from telemetry import ingest

    real, calls = ingest._records_insert, []

    def insert(rows):
        calls.append(1)
        if len(calls) <= times:
            error = OperationalError("deadlock detected")
            error.__cause__ = _Deadlock()
            raise error
        return real(rows)

    monkeypatch.setattr(ingest, "_records_insert", insert)
    return calls


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_victim_is_retried_inside_the_server_and_stored_once(monkeypatch, client):
    key = _relay_key()
    calls = _deadlocking(monkeypatch, times=1)
    batch = [_snapshot(h, minutes_ago=1) for h in HOSTS[:5]]
    response = client.post(BATCH, batch, content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 201, response.content
    assert len(calls) == 2
    assert Snapshot.objects.count() == 5 and ProcessRecord.objects.count() == 5 * len(PROCESSES)


@pytest.mark.django_db(transaction=True)
def test_a_second_deadlock_is_a_503_that_says_retry_and_stores_nothing(monkeypatch, client):
    key = _relay_key()
    _deadlocking(monkeypatch, times=2)
    response = client.post(BATCH, [_snapshot("first-contact-00", 1)], content_type="application/json",
                           HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 503 and "Retry" in response.json()["detail"]
    assert not Snapshot.objects.exists() and not Endpoint.objects.exists()
