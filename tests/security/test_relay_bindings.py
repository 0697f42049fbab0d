"""Issue 19: a relay key reports for hosts bound to no key, never for a host another key owns.

A relay that wrote a bound host (unaudited) also took its next timestamps: the host's own key then
got 409 and its snapshot was lost. The refusal is audited like any other, with the true reason.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from telemetry.models import AgentHost, AgentKey, Endpoint, Snapshot

URL = "/api/telemetry/snapshots/"


def _agent(name: str, *hosts: str, scope=AgentKey.Scope.HOSTS) -> tuple[APIClient, AgentKey]:
    key, secret = AgentKey.objects.create_key(name=name, scope=scope)
    for host in hosts:
        AgentHost.objects.create(hostname=host, key=key)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client, key


def _snapshot(hostname: str, at, names=("systemd", "sshd", "cron")) -> dict:
    return {"hostname": hostname, "timestamp": at.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "os": "linux", "processes": [{"name": n, "pid": 10 + i} for i, n in enumerate(names)]}


@pytest.fixture
def relay():
    return _agent("site-relay", scope=AgentKey.Scope.RELAY)


@pytest.mark.django_db
def test_a_relay_may_not_write_a_host_bound_to_another_key_nor_take_its_timestamps(relay):
    relay_client, relay_key = relay
    own, _ = _agent("ws-2", "ws-2")
    at = timezone.now() - timedelta(minutes=2)

    refused = relay_client.post(URL, _snapshot("ws-2", at, names=("harmless",)), format="json")
    batch = relay_client.post(URL + "batch/", [_snapshot("ws-2", at + timedelta(seconds=i)) for i in range(3)], format="json")

    assert refused.status_code == 403
    assert refused.json() == {"detail": "This agent key may not report for host ws-2."}
    assert batch.status_code == 201
    assert [r["error"]["status"] for r in batch.json()["results"]] == [403] * 3
    assert not Snapshot.objects.exists() and not Endpoint.objects.exists()
    (event,) = AuditEvent.objects.filter(action="ingest.refused")
    assert (event.outcome, event.actor_name, event.count) == ("denied", "relay:site-relay", 2)
    assert event.resource_id == relay_key.prefix
    assert event.details["reason"] == "host bound to another key" and event.details["hostnames"] == ["ws-2"]
    # The host's own key then stores its snapshot at the time the relay tried to take.
    answer = own.post(URL, _snapshot("ws-2", at), format="json")
    assert answer.status_code == 201, answer.content
    assert Snapshot.objects.get().agent.name == "ws-2"


@pytest.mark.django_db
def test_a_relay_still_writes_hosts_bound_to_no_key_and_hosts_bound_to_it(relay):
    relay_client, relay_key = relay
    _agent("ws-3", "ws-3")
    AgentHost.objects.create(hostname="behind-relay", key=relay_key)
    at = timezone.now() - timedelta(minutes=1)

    one = relay_client.post(URL, _snapshot("unbound-1", at), format="json")
    results = relay_client.post(URL + "batch/", [_snapshot("unbound-2", at), _snapshot("ws-3", at),
                                                 _snapshot("behind-relay", at)], format="json").json()["results"]

    assert one.status_code == 201, one.content
    assert ["error" in r for r in results] == [False, True, False]
    assert set(Endpoint.objects.values_list("hostname", flat=True)) == {"unbound-1", "unbound-2", "behind-relay"}
    # A relay binds nothing: the hosts it forwards stay free for their own keys.
    assert set(AgentHost.objects.values_list("hostname", "key__name")) == {("ws-3", "ws-3"), ("behind-relay", "site-relay")}


@pytest.mark.django_db
def test_a_relays_host_report_for_a_bound_host_is_refused(relay):
    relay_client, _ = relay
    _agent("mbp-1", "mbp-1")
    answer = relay_client.post("/ingest/snapshot", {"hostname": "mbp-1", "host_info": {"os": "macOS"}}, format="json")
    assert answer.status_code == 403
    assert answer.json() == {"detail": "This agent key may not report for host mbp-1."}
    assert not Endpoint.objects.exists()
    assert AuditEvent.objects.get(action="ingest.refused").details["hostnames"] == ["mbp-1"]


@pytest.mark.django_db
def test_the_refusal_says_whether_the_host_is_bound_to_another_key_or_to_none():
    client, key = _agent("kiosk-3", "kiosk-3")
    _agent("api-01", "api-01")
    at = timezone.now() - timedelta(minutes=1)
    results = client.post(URL + "batch/", [_snapshot("api-01", at), _snapshot("nobodys-host", at)],
                          format="json").json()["results"]
    assert [r["error"]["status"] for r in results] == [403, 403]
    events = {e.details["reason"]: e for e in AuditEvent.objects.filter(action="ingest.refused")}
    assert set(events) == {"host bound to another key", "host not bound to this key"}
    assert events["host bound to another key"].details["hostnames"] == ["api-01"]
    assert events["host not bound to this key"].details["hostnames"] == ["nobodys-host"]
    assert {e.resource_id for e in events.values()} == {key.prefix}
