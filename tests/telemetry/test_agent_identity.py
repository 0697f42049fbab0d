"""Agent identity: a key reports for its own hosts only, and what is stored is never overwritten or blinded."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from telemetry.demo import demo_payloads
from telemetry.models import AgentHost, AgentKey, Endpoint, ProcessRecord, Snapshot
from tests import fleet

URL = "/api/telemetry/snapshots/"


def _agent(name: str, *hosts: str, scope=AgentKey.Scope.HOSTS) -> APIClient:
    key, secret = AgentKey.objects.create_key(name=name, scope=scope)
    for host in hosts:
        AgentHost.objects.create(hostname=host, key=key)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def _stamp(at) -> str:
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _snapshot(hostname: str, at, names=("systemd", "sshd", "cron")) -> dict:
    return {"hostname": hostname, "timestamp": _stamp(at), "os": "linux",
            "processes": [{"name": n, "pid": 10 + i} for i, n in enumerate(names)]}


def _with_intruder(hostname: str, at) -> dict:
    """The host's ordinary snapshot of the hour, plus the intruder the fleet story plants there."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    hour = demo_payloads(start=start, end=start + timedelta(hours=1), novelties=True)
    payload = next(p for p in hour if p["hostname"] == hostname)
    return {**payload, "timestamp": _stamp(at)}


@pytest.mark.django_db
def test_another_key_cannot_blind_a_host_with_future_snapshots():
    """The reproduction: a key posted harmless snapshots for another host up to 5 minutes ahead, one per 10 s."""
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    victim = _agent("api-01", "api-01")
    attacker = _agent("kiosk-3", "kiosk-3")
    now = timezone.now()
    forged = [_snapshot("api-01", now + timedelta(seconds=10 * i)) for i in range(30)]

    answers = [attacker.post(URL, p, format="json") for p in forged]
    batch = attacker.post(URL + "batch/", forged[:5], format="json")

    assert {a.status_code for a in answers} == {403}
    assert answers[0].json() == {"detail": "This agent key may not report for host api-01."}
    assert batch.status_code == 201
    assert [r["error"]["status"] for r in batch.json()["results"]] == [403] * 5
    assert not Snapshot.objects.filter(endpoint__hostname="api-01", timestamp__gt=now - timedelta(seconds=1)).exists()
    # One audit event counts the repeats of the same refusal (one per request and host), naming the key and the host.
    (event,) = AuditEvent.objects.filter(action="ingest.refused")
    assert event.count == 31 and event.outcome == "denied" and event.actor_name == "agent:kiosk-3"
    assert event.details["hostnames"] == ["api-01"] and event.details["scope"] == "hosts"

    # The real agent's next snapshot, at one of the forged times, is stored and scored as itself.
    real = victim.post(URL, _with_intruder("api-01", now + timedelta(seconds=60)), format="json")
    assert real.status_code == 201, real.content
    assert "kdevtmpfsi" in [a["name"] for a in real.json()["anomalies"]]
    assert Snapshot.objects.get(pk=real.json()["snapshot_id"]).agent.name == "api-01"


@pytest.mark.django_db
def test_a_replay_with_other_content_is_a_conflict_and_changes_nothing():
    agent = _agent("db-7", "db-7")
    at = timezone.now() - timedelta(minutes=1)
    first = agent.post(URL, _snapshot("db-7", at), format="json")
    again = agent.post(URL, _snapshot("db-7", at), format="json")
    other = agent.post(URL, _snapshot("db-7", at, names=("systemd",)), format="json")

    assert first.status_code == 201 and again.status_code == 200 and again.json() == first.json()
    assert other.status_code == 409
    assert "already stored with other content" in other.json()["detail"]
    snapshot = Snapshot.objects.get()
    assert snapshot.process_count == 3 and ProcessRecord.objects.count() == 3
    # In a batch, the same conflict is that item's error, and the others stand.
    batch = agent.post(URL + "batch/", [_snapshot("db-7", at, names=("bash",)), _snapshot("db-7", at + timedelta(seconds=5))],
                       format="json").json()["results"]
    assert batch[0]["error"]["status"] == 409 and "snapshot_id" in batch[1]
    assert Snapshot.objects.count() == 2 and Snapshot.objects.get(pk=snapshot.pk).process_count == 3


@pytest.mark.django_db
def test_the_same_host_and_time_from_another_key_is_a_conflict():
    relay = _agent("site-relay", scope=AgentKey.Scope.RELAY)
    at = timezone.now() - timedelta(minutes=2)
    # The relay forwarded ws-2 while no key owned it; then ws-2 got its own key.
    assert relay.post(URL, _snapshot("ws-2", at), format="json").status_code == 201
    own = _agent("ws-2", "ws-2")
    answer = own.post(URL, _snapshot("ws-2", at), format="json")
    assert answer.status_code == 409 and "from another agent key" in answer.json()["detail"]
    assert Snapshot.objects.get().agent.name == "site-relay"


@pytest.mark.django_db(transaction=True)
def test_two_machines_with_the_same_short_hostname_are_not_merged(manage):
    made = manage("create_agent", "web")
    assert made.returncode == 0, made.stderr
    first = APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Api-Key {made.stdout.strip()}")
    at = timezone.now() - timedelta(minutes=3)
    assert first.post(URL, _snapshot("web", at), format="json").status_code == 201

    # The second "web" (another domain) gets no key for a host that already has one ...
    refused = manage("create_agent", "web-shop", "--host", "web")
    assert refused.returncode != 0
    assert "web (key 'web'" in refused.stderr and "--move" in refused.stderr
    assert not AgentKey.objects.filter(name="web-shop").exists()
    # ... and a key that enrolls hosts as it meets them cannot take it over either.
    second = _agent("old-fleet-key", scope=AgentKey.Scope.ENROLL)
    for when in (at, at + timedelta(minutes=1)):
        answer = second.post(URL, _snapshot("web", when, names=("nginx", "php-fpm")), format="json")
        assert answer.status_code == 403, answer.content
    assert Snapshot.objects.count() == 1
    assert set(ProcessRecord.objects.values_list("name", flat=True)) == {"systemd", "sshd", "cron"}


@pytest.mark.django_db(transaction=True)
def test_create_agent_binds_hosts_makes_relays_and_moves_a_host_only_when_asked(manage):
    assert manage("create_agent", "ws-9").returncode == 0
    assert list(AgentHost.objects.filter(key__name="ws-9").values_list("hostname", flat=True)) == ["ws-9"]
    made = manage("create_agent", "lab", "--host", "lab-1", "--host", "lab-2")
    assert made.returncode == 0, made.stderr and "lab-1, lab-2" in made.stderr
    relay = manage("create_agent", "collector", "--any-host")
    assert relay.returncode == 0 and "any host (relay)" in relay.stderr
    assert AgentKey.objects.get(name="collector").scope == AgentKey.Scope.RELAY
    created = AuditEvent.objects.get(action="agent.created", details__name="collector")
    assert created.details["scope"] == "relay"
    assert manage("create_agent", "both", "--any-host", "--host", "x").returncode != 0

    # A re-imaged lab-2 gets a new key: only with --move, audited, and the old key keeps lab-1.
    moved = manage("create_agent", "lab-2-new", "--host", "lab-2", "--move")
    assert moved.returncode == 0, moved.stderr
    assert AgentHost.objects.get(hostname="lab-2").key.name == "lab-2-new"
    old = AgentKey.objects.get(name="lab")
    assert not old.revoked and list(old.hosts.values_list("hostname", flat=True)) == ["lab-1"]
    event = AuditEvent.objects.get(action="agent.host_moved")
    assert event.details["from_name"] == "lab" and event.details["to_name"] == "lab-2-new"


@pytest.mark.django_db
def test_an_enrolling_key_takes_new_hosts_and_never_another_keys():
    enrolling = _agent("legacy", scope=AgentKey.Scope.ENROLL)
    _agent("owner", "owned-host")
    at = timezone.now() - timedelta(minutes=1)
    results = enrolling.post(URL + "batch/", [_snapshot("new-a", at), _snapshot("owned-host", at), _snapshot("new-b", at)],
                             format="json").json()["results"]
    assert ["error" in r for r in results] == [False, True, False]
    assert results[1]["error"]["status"] == 403
    assert set(AgentHost.objects.filter(key__name="legacy").values_list("hostname", flat=True)) == {"new-a", "new-b"}


@pytest.mark.django_db
def test_the_admin_has_one_place_for_agent_keys_and_is_branded(client):
    root = User.objects.create_superuser("root", "root@voltaxe.test", "pw")
    client.force_login(root)
    _agent("edge-relay", scope=AgentKey.Scope.RELAY)
    _agent("ws-4", "ws-4")
    index = client.get("/admin/").content.decode()
    assert "Voltaxe" in index and 'href="/live-telemetry/"' in index
    assert "/admin/rest_framework_api_key/" not in index and "Agent keys" in index
    assert client.get("/admin/rest_framework_api_key/apikey/").status_code == 404
    keys = client.get("/admin/telemetry/agentkey/").content.decode()
    assert "any host (relay)" in keys and "ws-4" in keys


@pytest.mark.django_db
def test_a_host_report_sets_the_os_that_later_legacy_snapshots_keep(agent_client):
    report = {"hostname": "mbp-1", "host_info": {"os": "macOS"}}
    assert agent_client.post("/ingest/snapshot", report, format="json").status_code == 200
    legacy = {"hostname": "mbp-1", "timestamp": _stamp(timezone.now()), "processes": ["launchd", "Finder", "Finder"]}
    assert agent_client.post("/ingest/process-snapshot", legacy, format="json").status_code == 201
    host = Endpoint.objects.get(hostname="mbp-1")
    assert host.os == "darwin" and host.names_only
    bad = agent_client.post("/ingest/snapshot", {"os": "linux"}, format="json")
    assert bad.status_code == 400 and "hostname" in bad.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_binds_existing_keys_to_the_hosts_they_last_reported_for():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    # Before the upgrade: two keys, each the last to report for its host, no host bound to any key.
    fleet_key, fleet_secret = AgentKey.objects.create_key(name="pre-upgrade")
    other_key, other_secret = AgentKey.objects.create_key(name="pre-upgrade-other")
    now = timezone.now()
    Endpoint.objects.create(hostname="old-host", first_seen=now, last_seen=now, last_agent=fleet_key)
    Endpoint.objects.create(hostname="other-host", first_seen=now, last_seen=now, last_agent=other_key)
    executor = MigrationExecutor(connection)
    executor.migrate([("telemetry", "0004_agent_identity")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    bound = dict(AgentHost.objects.values_list("hostname", "key__name"))
    assert bound == {"old-host": "pre-upgrade", "other-host": "pre-upgrade-other"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {fleet_secret}")
    at = now - timedelta(minutes=1)
    assert client.post(URL, _snapshot("old-host", at), format="json").status_code == 201
    assert client.post(URL, _snapshot("not-seen-yet", at), format="json").status_code == 201  # the fleet keeps growing
    assert client.post(URL, _snapshot("other-host", at), format="json").status_code == 403


@pytest.mark.django_db
def test_moving_a_host_in_the_admin_is_audited_and_revokes_nothing(client):
    root = User.objects.create_superuser("root", "root@voltaxe.test", "pw")
    client.force_login(root)
    _agent("old-image", "kiosk-9", "kiosk-10")
    _agent("new-image")
    new = AgentKey.objects.get(name="new-image")
    binding = AgentHost.objects.get(hostname="kiosk-9")
    answer = client.post(f"/admin/telemetry/agenthost/{binding.pk}/change/", {"key": new.pk})
    assert answer.status_code == 302, answer.content[:500]
    assert AgentHost.objects.get(hostname="kiosk-9").key == new
    assert not AgentKey.objects.get(name="old-image").revoked
    assert AgentHost.objects.get(hostname="kiosk-10").key.name == "old-image"
    event = AuditEvent.objects.get(action="agent.host_moved")
    assert event.actor == root and event.details["from_name"] == "old-image" and event.details["via"] == "admin"
    added = client.post("/admin/telemetry/agenthost/add/", {"hostname": "kiosk-11", "key": new.pk})
    assert added.status_code == 302 and AgentHost.objects.get(hostname="kiosk-11").key == new
