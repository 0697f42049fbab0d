"""Issue 13, reborn hosts: a host that comes back as another machine is judged as young, with its peers.

A reinstalled host's new programs are not news one by one, and its old history vouches for
nothing it runs now.
"""
from datetime import timedelta

import pytest

from tests import fleet
from tests.axon.stories import Proc, Story, flags, linux_base

HISTORY = 72
SILENT = 24  # the last day of the history: the host is off, being reinstalled
WIN = "C:\\Windows\\System32\\"


def _windows(user: str) -> list[Proc]:
    return [
        Proc("System", "", user="SYSTEM", parent=""), Proc("smss.exe", WIN + "smss.exe", user="SYSTEM", parent="System"),
        Proc("csrss.exe", WIN + "csrss.exe", user="SYSTEM", parent=""),
        Proc("wininit.exe", WIN + "wininit.exe", user="SYSTEM", parent=""),
        Proc("services.exe", WIN + "services.exe", user="SYSTEM", parent="wininit.exe"),
        Proc("lsass.exe", WIN + "lsass.exe", user="SYSTEM", parent="wininit.exe"),
        Proc("svchost.exe", WIN + "svchost.exe", user="SYSTEM", parent="services.exe", count=8),
        Proc("explorer.exe", "C:\\Windows\\explorer.exe", user=user, parent=""),
        Proc("OneDrive.exe", f"C:\\Users\\{user}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe", user=user,
             parent="explorer.exe"),
        Proc("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", user=user,
             parent="explorer.exe", count=4),
    ]


def _web() -> list[Proc]:
    return linux_base() + [Proc("nginx", "/usr/sbin/nginx", user="www-data", count=3),
                           Proc("gunicorn", "/opt/app/venv/bin/python3", user="app", count=4),
                           Proc("redis-server", "/usr/bin/redis-server", user="redis"),
                           Proc("containerd", "/usr/bin/containerd"), Proc("dockerd", "/usr/bin/dockerd")]


def _lab() -> list[Proc]:
    # The host's first life: a lab box with its own tools, among them a relay nobody else runs.
    return [Proc("systemd", "/usr/lib/systemd/systemd", parent=""), Proc("sshd", "/usr/sbin/sshd"),
            Proc("socat", "/usr/bin/socat", user="lab"), Proc("jupyter-lab", "/opt/lab/bin/python3", user="lab"),
            Proc("mosquitto", "/usr/sbin/mosquitto", user="mosquitto"), Proc("influxd", "/usr/bin/influxd", user="influx"),
            Proc("grafana", "/usr/sbin/grafana", user="grafana"), Proc("telegraf", "/usr/bin/telegraf", user="telegraf"),
            Proc("node-red", "/usr/bin/node-red", user="lab")]


def _story() -> Story:
    return Story(hosts={
        "web-01": ("linux", _web()), "web-02": ("linux", _web()), "web-03": ("linux", _web()),
        "wks-01": ("windows", _windows("ana")), "wks-02": ("windows", _windows("raj")),
        "lab-07": ("linux", _lab()),
    })


@pytest.fixture
def trained(db):
    story = _story()
    story.ingest(0, HISTORY - SILENT)
    story.ingest(HISTORY - SILENT, HISTORY, only=set(story.hosts) - {"lab-07"})
    run = fleet.train()
    assert run.status == "succeeded", run.message
    return story


@pytest.mark.clock
@pytest.mark.django_db
def test_a_host_reinstalled_with_another_os_is_judged_with_its_peers(trained):
    trained.hosts["lab-07"] = ("windows", _windows("lee"))
    results = trained.ingest(HISTORY, HISTORY + 3, only={"lab-07"})
    assert flags(results) == []


@pytest.mark.clock
@pytest.mark.django_db
def test_a_host_back_from_silence_as_another_machine_is_judged_young(trained):
    # Same OS, a new role: its programs are its peers', and nothing of its old life is vouched for.
    trained.hosts["lab-07"] = ("linux", _web())
    results = trained.ingest(HISTORY, HISTORY + 3, only={"lab-07"})
    assert flags(results) == []
    relay = Proc("socat", "/usr/bin/socat", user="lab")  # just as in its first life
    results = trained.ingest(HISTORY + 3, HISTORY + 4, only={"lab-07"}, extra={"lab-07": [relay]})
    assert flags(results) == [("lab-07", "socat", ("never seen on this host", "seen on 0 of 3 linux hosts"))]


@pytest.mark.django_db
def test_after_the_next_training_the_old_life_is_forgotten(trained):
    from telemetry.models import Endpoint

    trained.hosts["lab-07"] = ("linux", _web())
    trained.ingest(HISTORY, HISTORY + 3, only={"lab-07"})
    reborn_at = Endpoint.objects.get(hostname="lab-07").reborn_at
    assert reborn_at is not None and reborn_at.hour == (trained.start.hour + HISTORY) % 24
    run = fleet.train()
    assert run.status == "succeeded", run.message
    relay = Proc("socat", "/usr/bin/socat", user="lab")
    results = trained.ingest(HISTORY + 3, HISTORY + 4, only={"lab-07"}, extra={"lab-07": [relay]})
    assert flags(results) == [("lab-07", "socat", ("never seen on this host", "seen on 0 of 4 linux hosts"))]


@pytest.mark.django_db
@pytest.mark.parametrize("processes", [
    ["sshd", "bash"],  # what a Sentinel sends when its listing half-fails (issue 19 point 5)
    [{"name": "sshd", "exe": "/usr/sbin/sshd", "username": "root"}, {"name": "bash", "exe": "/usr/bin/bash"}],
], ids=["names-only", "partial"])
def test_a_half_failed_listing_from_a_hosts_own_key_does_not_make_it_reborn_nor_hold_back_retraining(
        trained, processes):
    from django.utils import timezone
    from rest_framework.test import APIClient

    from telemetry.models import AgentKey, Endpoint

    _, key = AgentKey.objects.create_key(name="lab-07")
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    when = (trained.start + timedelta(hours=HISTORY, minutes=5)).isoformat()
    assert timezone.now() > trained.start + timedelta(hours=HISTORY, minutes=5)
    response = agent.post("/api/telemetry/snapshots/", {"hostname": "lab-07", "timestamp": when, "processes": processes},
                          format="json")
    assert response.status_code == 201, response.content
    assert Endpoint.objects.get(hostname="lab-07").reborn_at is None
    run = fleet.train()
    assert run.status == "succeeded", run.message
