"""Refusals are audited without letting the refused flood the audit log (issue 19)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import SAMPLE_MAX
from telemetry.models import AgentHost, AgentKey, Snapshot


@pytest.mark.django_db
def test_refusals_for_many_host_names_from_one_key_count_on_a_few_events():
    """The reproduction wrote one event per refused host name: 2,200 in 16 s from one key."""
    key, secret = AgentKey.objects.create_key(name="kiosk-3", scope=AgentKey.Scope.HOSTS)
    AgentHost.objects.create(hostname="kiosk-3", key=key)
    AgentHost.objects.create(hostname="api-01", key=AgentKey.objects.create_key(name="api-01")[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    at = (timezone.now() - timedelta(minutes=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def snapshot(host):
        return {"hostname": host, "timestamp": at, "processes": ["systemd"]}

    singles = [client.post("/api/telemetry/snapshots/", snapshot(f"made-up-{i}"), format="json") for i in range(400)]
    batch = client.post("/api/telemetry/snapshots/batch/", [snapshot(f"batch-{i}") for i in range(99)] + [snapshot("api-01")],
                        format="json")

    assert {r.status_code for r in singles} == {403} and batch.status_code == 201
    assert [r["error"]["status"] for r in batch.json()["results"]] == [403] * 100
    assert not Snapshot.objects.exists()
    events = AuditEvent.objects.filter(action="ingest.refused")
    # One event per key, address and reason while the refusals keep coming.
    assert [(e.details["reason"], e.count) for e in events.order_by("timestamp")] == [
        ("host not bound to this key", 499), ("host bound to another key", 1)]
    unbound = events.get(details__reason="host not bound to this key")
    assert unbound.details["hostnames"] == [f"made-up-{i}" for i in range(SAMPLE_MAX)]
    assert unbound.resource_type == "agent_key" and unbound.resource_id == key.prefix


@pytest.mark.django_db
def test_an_analyst_refused_the_audit_log_leaves_an_event(analyst_client, admin_client):
    for _ in range(3):
        assert analyst_client.get("/api/audit/events/", HTTP_USER_AGENT="curl/8").status_code == 403
    assert APIClient().get("/api/audit/events/").status_code == 401

    (event,) = admin_client.get("/api/audit/events/?action=audit.read").json()["results"]
    assert (event["actor"], event["outcome"], event["count"]) == ("ann@voltaxe.test", "denied", 3)
    assert event["user_agent"] == "curl/8" and event["ip_address"] == "127.0.0.1"
    # The security admin's own read is not an event: reading never writes.
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_key_replaying_its_stored_timestamps_with_other_content_counts_on_one_event():
    """Each replayed snapshot used to write a row of its own (the stored snapshot was the resource)."""
    key, secret = AgentKey.objects.create_key(name="kiosk-4", scope=AgentKey.Scope.HOSTS)
    AgentHost.objects.create(hostname="kiosk-4", key=key)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    times = [(timezone.now() - timedelta(minutes=m)).replace(microsecond=0) for m in range(1, 31)]

    def snapshot(at, name):
        return {"hostname": "kiosk-4", "timestamp": at.isoformat().replace("+00:00", "Z"), "processes": [name]}

    assert {client.post("/api/telemetry/snapshots/", snapshot(at, "systemd"), format="json").status_code
            for at in times} == {201}
    replays = [client.post("/api/telemetry/snapshots/", snapshot(at, "evil"), format="json") for at in times]
    assert {r.status_code for r in replays} == {409} and Snapshot.objects.count() == 30
    (event,) = AuditEvent.objects.filter(action="ingest.conflict")
    assert (event.count, event.details["reason"], event.resource_id) == (30, "other content", key.prefix)
    assert event.details["snapshots"][0] == f"kiosk-4@{times[0].isoformat()}"
    assert len(event.details["snapshots"]) == SAMPLE_MAX
