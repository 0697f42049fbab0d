"""GET /api/telemetry/hosts/ and /api/telemetry/hosts/<hostname>/: which hosts report, and which went silent.

Every snapshot is delivered at a pinned instant (time_machine, not ticking), so the server's receipt
times, from which "late" is judged, are exact.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from telemetry.hosts import hosts_late, usual_interval
from telemetry.models import AgentKey, ProcessRecord
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

HOSTS = "/api/telemetry/hosts/"
FIVE_MIN = timedelta(minutes=5)


def agent(name: str) -> tuple[APIClient, str]:
    """A client holding a new agent key named `name` (bound to the host of that name), and the key."""
    _, key = AgentKey.objects.create_key(name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client, key


def payload(host: str, when: datetime) -> dict:
    return {"hostname": host, "os": "linux", "timestamp": when.isoformat(), "processes": [
        {"name": "systemd", "pid": 1, "ppid": 0, "exe": "/usr/lib/systemd/systemd", "username": "root", "cmdline": "/sbin/init"},
        {"name": "sshd", "pid": 812, "ppid": 1, "exe": "/usr/sbin/sshd", "username": "root",
         "cmdline": "sshd: /usr/sbin/sshd -D"},
    ]}


def deliver(client: APIClient, host: str, received: datetime, *, written: datetime | None = None) -> None:
    """One snapshot the server receives at `received`, stamped `written` by the agent (the same by default)."""
    with time_machine.travel(received, tick=False):
        response = client.post("/api/telemetry/snapshots/", payload(host, written or received), format="json")
    assert response.status_code == 201, response.content


def every_five_minutes(client: APIClient, host: str, start: datetime, n: int = 6) -> datetime:
    """n snapshots five minutes apart from `start`; returns when the last one arrived."""
    for i in range(n):
        deliver(client, host, start + i * FIVE_MIN)
    return start + (n - 1) * FIVE_MIN


def hosts_at(client: APIClient, when: datetime, query: str = "") -> dict:
    with time_machine.travel(when, tick=False):
        response = client.get(HOSTS + query)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def start() -> datetime:
    return timezone.now().replace(microsecond=0) - timedelta(hours=2)


def test_a_host_is_late_once_silent_for_three_usual_intervals(analyst_client, start):
    client, key = agent("web-1")
    last = every_five_minutes(client, "web-1", start)

    on_time = hosts_at(analyst_client, last + timedelta(minutes=14, seconds=59))
    assert on_time["total"] == 1
    host = on_time["results"][0]
    assert host["hostname"] == "web-1" and host["os"] == "linux" and host["names_only"] is False
    assert host["usual_interval_seconds"] == 300 and host["late"] is False and host["late_since"] is None
    # The key's name, never the key.
    assert host["agent"] == "web-1"
    assert key not in str(on_time) and key[:8] not in str(on_time)
    assert set(host) >= {"hostname", "os", "agent", "names_only", "first_seen", "last_seen", "usual_interval_seconds",
                         "late", "open_alerts"}

    late = hosts_at(analyst_client, last + timedelta(minutes=15, seconds=1))["results"][0]
    assert late["late"] is True
    assert datetime.fromisoformat(late["late_since"]) == last + timedelta(minutes=15)


def test_the_usual_interval_is_when_the_server_heard_not_what_the_agent_wrote(analyst_client, start):
    """A compromised agent that stamps its snapshots a day apart cannot make hours of silence look usual."""
    client, _ = agent("db-1")
    for i in range(6):
        deliver(client, "db-1", start + i * FIVE_MIN, written=start - timedelta(days=6 - i))
    last = start + 5 * FIVE_MIN
    host = hosts_at(analyst_client, last + timedelta(minutes=16))["results"][0]
    assert host["usual_interval_seconds"] == 300 and host["late"] is True


def test_a_backlog_delivered_at_once_is_one_delivery():
    at = datetime(2026, 11, 11, 12, 0, tzinfo=UTC).timestamp()
    backlog = [at + i / 1000 for i in range(50)]  # a batch: received within one request
    assert usual_interval(backlog) is None
    assert usual_interval([*backlog, at + 60, at + 120]) == pytest.approx(60, abs=0.1)
    # The median: one outage of an hour does not stretch the usual interval.
    assert usual_interval([at + i * 300 for i in range(5)] + [at + 80 * 60]) == 300


def test_a_host_that_reported_once_is_not_judged(analyst_client, start):
    client, _ = agent("new-1")
    deliver(client, "new-1", start)
    host = hosts_at(analyst_client, start + timedelta(days=1))["results"][0]
    assert host["usual_interval_seconds"] is None and host["late"] is False


def test_late_and_q_filter_the_list(analyst_client, start):
    clients = {name: agent(name)[0] for name in ("web-1", "web-2", "db-1")}
    for name, client in clients.items():
        every_five_minutes(client, name, start)
    # web-2 carries on reporting; the other two fall silent after their sixth snapshot.
    now = start + timedelta(hours=1)
    for i in range(3):
        deliver(clients["web-2"], "web-2", now - timedelta(minutes=10) + i * FIVE_MIN)

    everyone = hosts_at(analyst_client, now)
    assert everyone["total"] == 3 and [h["hostname"] for h in everyone["results"]] == ["db-1", "web-1", "web-2"]
    late = hosts_at(analyst_client, now, "?late=true")
    assert late["total"] == 2 and [h["hostname"] for h in late["results"]] == ["db-1", "web-1"]
    assert [h["hostname"] for h in hosts_at(analyst_client, now, "?late=false")["results"]] == ["web-2"]
    assert [h["hostname"] for h in hosts_at(analyst_client, now, "?q=WEB")["results"]] == ["web-1", "web-2"]
    assert [h["hostname"] for h in hosts_at(analyst_client, now, "?q=web&late=true")["results"]] == ["web-1"]
    assert hosts_at(analyst_client, now, "?q=nothing-like-it") == {"total": 0, "results": []}

    # What a notifier will call: the silent hosts, with when each went late.
    with time_machine.travel(now, tick=False):
        silent = hosts_late()
    assert [h.hostname for h in silent] == ["db-1", "web-1"]
    assert {h.late_since for h in silent} == {start + 5 * FIVE_MIN + timedelta(minutes=15)}


@pytest.mark.parametrize("query, parameter", [("late=yes", "late"), ("late=1", "late"), ("q=a%00b", "q"),
                                              ("q=" + "x" * 256, "q")])
def test_a_bad_filter_is_400_naming_the_parameter(analyst_client, query, parameter):
    response = analyst_client.get(f"{HOSTS}?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith(parameter) and list(body["errors"]) == [parameter]


def test_one_host_with_its_last_snapshot(analyst_client, start):
    client, key = agent("web-1")
    last = every_five_minutes(client, "web-1", start, n=3)
    with time_machine.travel(last + timedelta(minutes=1), tick=False):
        response = analyst_client.get(f"{HOSTS}web-1/")
    assert response.status_code == 200
    body = response.json()
    assert body["hostname"] == "web-1" and body["agent"] == "web-1" and body["late"] is False
    assert key not in response.content.decode()
    snapshot = body["last_snapshot"]
    assert datetime.fromisoformat(snapshot["timestamp"]) == last
    assert [p["name"] for p in snapshot["processes"]] == ["systemd", "sshd"]
    sshd = snapshot["processes"][1]
    assert {k: sshd[k] for k in ("pid", "ppid", "exe", "user", "cmdline")} == {
        "pid": 812, "ppid": 1, "exe": "/usr/sbin/sshd", "user": "root", "cmdline": "sshd: /usr/sbin/sshd -D"}
    assert "flagged" in sshd and "score" in sshd


def test_an_unknown_host_is_404(analyst_client):
    response = analyst_client.get(f"{HOSTS}never-reported/")
    assert response.status_code == 404
    assert "never-reported" in response.json()["detail"]


def test_analysts_and_admins_read_hosts_agents_and_strangers_do_not(analyst_client, admin_client, anon_client, nobody):
    agent_client, _ = agent("web-1")
    assert analyst_client.get(HOSTS).status_code == 200
    assert admin_client.get(HOSTS).status_code == 200
    assert agent_client.get(HOSTS).status_code == 403
    assert agent_client.get(f"{HOSTS}web-1/").status_code == 403
    assert anon_client.get(HOSTS).status_code == 401
    assert client_for(nobody).get(HOSTS).status_code == 403


def test_open_alerts_count_alert_groups_that_are_open(analyst_client, start):
    """Triage lives in axon; the count arrives through the seam: acknowledging the alert takes it off the count."""
    client, _ = agent("web-1")
    every_five_minutes(client, "web-1", start, n=3)
    ProcessRecord.objects.filter(name="sshd").update(flagged=True, status="open", score=0.9, reasons=["never seen on this host"])
    assert hosts_at(analyst_client, start + timedelta(minutes=11))["results"][0]["open_alerts"] == 1
    key = analyst_client.get("/api/axon/alerts/").json()["results"][0]["key"]
    response = analyst_client.post("/api/axon/alerts/triage/", {"keys": [key], "status": "acknowledged", "note": "mine"},
                                   format="json")
    assert response.status_code == 200
    assert hosts_at(analyst_client, start + timedelta(minutes=11))["results"][0]["open_alerts"] == 0


def test_process_start_events_do_not_change_a_hosts_rhythm_or_its_last_snapshot(analyst_client, start):
    client, _ = agent("web-1")
    last = every_five_minutes(client, "web-1", start)
    for i in range(8):  # a shipper's bursts of starts, a minute apart, after the last snapshot
        with time_machine.travel(last + timedelta(minutes=1 + i), tick=False):
            events = [{"hostname": "web-1", "timestamp": (last + timedelta(minutes=1 + i, seconds=j)).isoformat(),
                       "pid": 9000 + 10 * i + j, "name": "cron", "exe": "/usr/sbin/cron"} for j in range(5)]
            assert client.post("/api/telemetry/events/", events, format="json").status_code == 201
    with time_machine.travel(last + timedelta(minutes=9), tick=False):
        host = analyst_client.get(HOSTS + "web-1/").json()
    assert host["usual_interval_seconds"] == 300 and not host["late"]
    assert [p["name"] for p in host["last_snapshot"]["processes"]] == ["systemd", "sshd"]


def test_what_an_operator_loads_without_a_key_is_not_judged_late(analyst_client, start):
    """The demo loads two days in seconds: its receipt times are the loader's pace, not an agent's rhythm."""
    from telemetry.ingest import snapshot_ingest

    for i in range(6):  # an hour apart by their timestamps, received one after another
        with time_machine.travel(start + timedelta(seconds=2 * i), tick=False):
            snapshot_ingest(payload=payload("loaded-1", start - timedelta(hours=6 - i)))
    host = hosts_at(analyst_client, start + timedelta(minutes=1), "?q=loaded-1")["results"][0]
    assert host["usual_interval_seconds"] is None and host["late"] is False
