"""Process-start events through HTTP: the API's own shape, Sysmon and ECS (fixtures written from their docs)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from telemetry.models import AgentHost, AgentKey, Endpoint, HostDay, ProcessRecord, ProcessRollup, Snapshot
from tests.payloads import rich, ts

pytestmark = pytest.mark.django_db

URL, SYSMON, ECS = "/api/telemetry/events/", "/api/telemetry/events/sysmon/", "/api/telemetry/events/ecs/"
FIXTURES = Path(__file__).parent / "fixtures"


def agent_for(*hosts: str) -> APIClient:
    agent, key = AgentKey.objects.create_key(name=hosts[0], scope=AgentKey.Scope.HOSTS)
    for host in hosts:
        AgentHost.objects.create(hostname=host, key=agent)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def start(name="whoami", pid=4242, **extra) -> dict:
    return {"hostname": "web-a", "timestamp": ts(2), "name": name, "pid": pid, "ppid": 900, "exe": f"/usr/bin/{name}",
            "cmdline": f"{name} --all", "username": "deploy", "parent_name": "bash", "parent_exe": "/usr/bin/bash", **extra}


def post(client, url, body, content_type="application/json"):
    return client.generic("POST", url, body if isinstance(body, (str, bytes)) else json.dumps(body),
                          content_type=content_type)


def test_events_are_stored_as_records_of_their_own_carrier_and_answered_one_by_one():
    web = agent_for("web-a")
    post(web, "/api/telemetry/snapshots/", rich("web-a", minutes_ago=5))
    events = [start(sha256="AB" * 32), start("id", pid=4243, parent_name=None, parent_exe="/usr/bin/bash")]
    response = post(web, URL, events)
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [set(r) for r in results] == [{"event_id", "hostname", "model_version", "anomalies"}] * 2
    assert results[0]["model_version"] is None and results[0]["anomalies"] == []  # no model yet: kept, scored later
    carrier = Snapshot.objects.get(pk=results[0]["event_id"])
    assert carrier.source == "event" and carrier.process_count == 1
    record = ProcessRecord.objects.get(snapshot=carrier)
    assert (record.name_norm, record.parent_name, record.sha256, record.pid) == ("whoami", "bash", "ab" * 32, 4242)
    assert record.observed_at == carrier.timestamp
    assert ProcessRecord.objects.get(snapshot_id=results[1]["event_id"]).parent_name == "bash"  # from parent_exe
    # Training sees each start as one observation, and no snapshot more.
    assert ProcessRollup.objects.get(name_norm="whoami").n == 1
    assert sum(HostDay.objects.values_list("snapshots", flat=True)) == 1
    # The host was heard from at its newest start.
    assert Endpoint.objects.get(hostname="web-a").last_seen == max(
        Snapshot.objects.filter(endpoint__hostname="web-a").values_list("timestamp", flat=True))


def test_the_summary_lists_snapshots_not_events(analyst_client):
    web = agent_for("web-a")
    post(web, "/api/telemetry/snapshots/", rich("web-a", minutes_ago=5))
    assert post(web, URL, [start()]).status_code == 201
    recent = analyst_client.get("/api/telemetry/summary/").json()["recent_snapshots"]
    assert [s["process_count"] for s in recent] == [3]


def test_the_same_event_again_is_answered_as_before_and_stored_once_other_content_is_409():
    web = agent_for("web-a")
    event = start()
    first = post(web, URL, [event]).json()["results"][0]
    again = post(web, URL, [event, dict(event, cmdline="whoami /priv"), dict(event, pid=4300)]).json()["results"]
    assert again[0] == first
    assert again[1]["error"]["status"] == 409 and "never overwritten" in again[1]["error"]["detail"]
    assert "event_id" in again[2]  # another pid is another process
    assert ProcessRecord.objects.filter(name="whoami").count() == 2
    # Twice in one request: stored once, both answered alike.
    twice = post(web, URL, [start("uname", pid=1), start("uname", pid=1)]).json()["results"]
    assert twice[0] == twice[1] and ProcessRecord.objects.filter(name="uname").count() == 1


def test_bad_events_are_refused_alone_with_the_field_named_and_nothing_of_them_stored():
    web = agent_for("web-a")
    response = post(web, URL, [start(timestamp="yesterday"), start(pid="12"), {"hostname": "web-a"},
                               start(sha256="xyz"), start("ok", pid=5)])
    assert response.status_code == 201
    errors = [r.get("error") for r in response.json()["results"]]
    assert errors[0]["status"] == 400 and "timestamp" in errors[0]["errors"]
    assert "pid" in errors[1]["errors"] and set(errors[2]["errors"]) == {"timestamp", "name"}
    assert "64 hexadecimal" in errors[3]["errors"]["sha256"][0] and "this event" in errors[3]["detail"]
    assert errors[4] is None
    assert list(ProcessRecord.objects.values_list("name", flat=True)) == ["ok"]
    assert post(web, URL, {"hostname": "web-a"}).status_code == 400
    assert post(web, URL, []).status_code == 400
    too_many = post(web, URL, [start(pid=i) for i in range(1001)])
    assert too_many.status_code == 400 and "at most 1000" in too_many.json()["detail"]


def test_a_key_reports_events_for_its_own_hosts_only(anon_client, analyst_client):
    web = agent_for("web-a")
    agent_for("db-1")
    result = post(web, URL, [start(hostname="db-1")]).json()["results"][0]
    assert result["error"]["status"] == 403 and "db-1" in result["error"]["detail"]
    assert not ProcessRecord.objects.exists()
    assert post(anon_client, URL, [start()]).status_code == 401
    assert post(analyst_client, URL, [start()]).status_code == 403


def test_sysmon_process_creation_records_are_events_and_other_records_are_skipped():
    ws = agent_for("ws-06")
    response = post(ws, SYSMON, (FIXTURES / "sysmon_process_create.ndjson").read_text(), "application/x-ndjson")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["stored"], body["skipped"], body["refused"]) == (2, 2, [])
    assert [r["index"] for r in body["results"]] == [0, 2]
    whoami, csc = (ProcessRecord.objects.get(snapshot_id=r["event_id"]) for r in body["results"])
    assert (whoami.name, whoami.exe, whoami.pid, whoami.ppid, whoami.username) == (
        "whoami.exe", "C:\\Windows\\System32\\whoami.exe", 4242, 3100, "CORP\\erin")
    assert whoami.parent_name == "cmd.exe" and whoami.cmdline == "whoami  /all"
    assert whoami.observed_at.isoformat() == "2026-11-10T09:00:00.123000+00:00"
    assert len(whoami.sha256) == 64 and whoami.sha256 == whoami.sha256.lower()
    assert csc.pid == 5120 and csc.parent_name == "msbuild.exe" and csc.sha256
    assert Endpoint.objects.get(hostname="ws-06").os == "windows"
    # The same export again (a shipper's retry): answered, stored once.
    again = post(ws, SYSMON, (FIXTURES / "sysmon_process_create.ndjson").read_text(), "application/x-ndjson").json()
    assert again["results"] == body["results"] and ProcessRecord.objects.count() == 2


def test_ecs_process_starts_from_winlogbeat_and_elastic_agent_are_events():
    client = agent_for("ws-07", "build-02")
    body = post(client, ECS, (FIXTURES / "ecs_process_start.json").read_text()).json()
    assert (body["stored"], body["skipped"], body["refused"]) == (2, 2, [])
    info, ident = (ProcessRecord.objects.get(snapshot_id=r["event_id"]) for r in body["results"])
    assert (info.name, info.pid, info.parent_name, info.username) == ("systeminfo.exe", 6120, "cmd.exe", "CORP\\frank")
    assert info.sha256 and info.observed_at.isoformat() == "2026-11-10T09:10:00.250000+00:00"
    assert (ident.name, ident.exe, ident.ppid, ident.parent_name, ident.args_norm) == ("id", "/usr/bin/id", 7000, "bash", "-u")
    assert Endpoint.objects.get(hostname="build-02").os == "linux"


def test_a_record_that_cannot_be_used_is_refused_by_position_and_field_the_rest_stored():
    ws = agent_for("ws-06")
    good = {"EventID": 1, "Computer": "ws-06", "UtcTime": "2026-11-10 10:00:00.000", "ProcessId": 1,
            "Image": "C:\\Windows\\System32\\tasklist.exe"}
    records = [good, dict(good, UtcTime="10/11/2026", ProcessId=2), dict(good, Image=None, ProcessId=3),
               dict(good, ProcessId="four"), {"Computer": "ws-06"}, "not a record"]
    body = "\n".join(json.dumps(r) for r in records) + "\n{broken\n"
    response = post(ws, SYSMON, body, "application/x-ndjson")
    assert response.status_code == 201, response.content
    refused = {r["index"]: r["detail"] for r in response.json()["refused"]}
    assert sorted(refused) == [1, 2, 3, 4, 5, 6]
    assert refused[1].startswith("Record 1: UtcTime:") and "Image" in refused[2]
    assert "ProcessId" in refused[3] and "EventID" in refused[4] and "line 7 is not JSON" in refused[6]
    assert list(ProcessRecord.objects.values_list("pid", flat=True)) == [1]


def test_nothing_usable_is_a_400_and_nothing_is_stored():
    ws = agent_for("ws-06")
    only_network = [{"EventID": 3, "Computer": "ws-06", "UtcTime": "2026-11-10 10:00:00.000"}]
    response = post(ws, SYSMON, only_network)
    assert response.status_code == 400 and response.json()["skipped"] == 1
    assert "Nothing could be used" in response.json()["detail"]
    bad = post(ws, ECS, [{"event": {"code": "1"}, "host": {"name": "ws-06"}, "process": {"pid": 1}}])
    assert bad.status_code == 400
    assert "process.name" in bad.json()["refused"][0]["detail"] and "@timestamp" in bad.json()["refused"][0]["detail"]
    assert post(ws, ECS, b"\xff\xfe").status_code == 400
    assert not Snapshot.objects.exists() and not ProcessRecord.objects.exists()


def test_retention_forgets_old_starts_with_their_records_like_snapshots(settings):
    from django.utils import timezone

    from telemetry.tasks import retention_task

    settings.RETENTION_DAYS = 30
    web = agent_for("web-a")
    old = start(timestamp=(timezone.now() - timedelta(days=31)).isoformat())
    assert "event_id" in post(web, URL, [old, start(pid=4300)]).json()["results"][0]
    retention_task()
    assert list(ProcessRecord.objects.values_list("pid", flat=True)) == [4300]
    assert Snapshot.objects.filter(source="event").count() == 1
