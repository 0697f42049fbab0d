"""Process-start events judged and learned like a snapshot's processes (issue 23, parts 1 and 2), through HTTP.

1. A one-shot tool that never lived through a snapshot is flagged from its start alone, under the
   key a snapshot's observation of it has, so alerts group and approve both as one.
2. A program that only ever starts briefly (a compiler a build runs) is learned: from its starts in
   the history, and, when it is new, by a press that approves it.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from telemetry.events import events_ingest
from telemetry.models import ProcessRecord
from tests import fleet
from tests.axon.stories import flags
from tests.axon.test_exact_approvals import agent, post, press, snapshot

pytestmark = pytest.mark.django_db

EVENTS = "/api/telemetry/events/"
DUMPER = {"name": "dumper", "exe": "/opt/tools/dumper", "username": "builder"}
CC1 = {"name": "cc1", "exe": "/usr/lib/gcc/x86_64-linux-gnu/12/cc1", "username": "builder", "parent_name": "java",
       "cmdline": "/usr/lib/gcc/x86_64-linux-gnu/12/cc1 -quiet main.c -O2"}


def start(program: dict, *, pid: int, seconds_ago: int, host: str = "build-01") -> dict:
    when = timezone.now().replace(microsecond=0) - timedelta(seconds=seconds_ago)
    return {"hostname": host, "timestamp": when.isoformat(), "pid": pid, "ppid": 100, "parent_name": "systemd", **program}


def send(client, *events: dict) -> list[dict]:
    response = client.post(EVENTS, list(events), format="json")
    assert response.status_code == 201, response.content
    return response.json()["results"]


@pytest.fixture
def trained(db):
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    return agent("build-01")


def test_a_one_shot_tool_is_flagged_from_its_start_alone_under_the_key_a_snapshot_gives_it(trained, analyst_client):
    (result,) = send(trained, start(DUMPER, pid=7001, seconds_ago=120))
    assert result["model_version"] is not None
    (anomaly,) = result["anomalies"]
    assert anomaly["name"] == "dumper" and anomaly["key"] and any("never seen" in r for r in anomaly["reasons"])
    # Later a snapshot catches the same program: one alert, two observations.
    assert "dumper" in post(trained, snapshot("build-01", [DUMPER], seconds_ago=60))
    alerts = [a for a in analyst_client.get("/api/axon/alerts/?status=all").json()["results"] if a["name"] == "dumper"]
    assert [(a["key"], a["count"]) for a in alerts] == [(anomaly["key"], 2)]
    # The alert's detail tells the start from the snapshot's observation.
    detail = analyst_client.get(f"/api/axon/alerts/{anomaly['key']}/").json()
    assert sorted(o["source"] for o in detail["observations"]) == ["event", "snapshot"]
    # An ordinary program's start is not news.
    (cron,) = send(trained, start({"name": "cron", "exe": "/usr/sbin/cron", "username": "root"}, pid=7002, seconds_ago=30))
    assert cron["anomalies"] == []


def test_a_program_that_only_ever_starts_briefly_is_learned_from_its_starts(db):
    """Events in the history (a build every 4 hours, never in a snapshot) are training data like observations."""
    split = fleet.history(days=2)
    builds = [start(CC1, pid=20000 + i, seconds_ago=int((timezone.now() - split).total_seconds()) + 4 * 3600 * i + 600)
              for i in range(12)]
    assert all("event_id" in r for r in events_ingest(payloads=builds))
    assert fleet.train().status == "succeeded"
    client = agent("build-01")
    (result,) = send(client, start(CC1, pid=30001, seconds_ago=20))
    assert result["anomalies"] == []
    # The same history without the builds' starts flags it: the starts are what taught the model.
    (dumper,) = send(client, start(dict(CC1, name="cc1x", exe="/usr/lib/gcc/x86_64-linux-gnu/12/cc1x"), pid=30002,
                                   seconds_ago=10))
    assert dumper["anomalies"]


def test_a_new_program_seen_only_starting_is_learned_by_a_press(trained, admin_client):
    (first,) = send(trained, start(CC1, pid=8001, seconds_ago=300))
    assert first["anomalies"], "never seen: news until someone says otherwise"
    preview = admin_client.get("/api/axon/retrain/preview/").json()["will_learn"]
    (item,) = [i for i in preview if i["name"] == "cc1"]
    assert item["key"] == first["anomalies"][0]["key"] and item["default"] is True
    run = press(admin_client, {"reason": "the new build toolchain"})
    assert first["anomalies"][0]["key"] in [a["key"] for a in run.approved]
    (later,) = send(trained, start(CC1, pid=8002, seconds_ago=10))
    assert later["anomalies"] == []
    assert ProcessRecord.objects.get(pid=8001, name="cc1").status == "approved"


@pytest.mark.django_db
def test_starts_between_snapshots_do_not_break_a_miners_cpu_streak(db):
    """The streak runs from snapshot to snapshot; a start in between (which moves the host's last_seen) is no snapshot."""
    from tests.axon.test_detect_resources import HISTORY, _miner, _story

    story = _story().trained(HISTORY)
    first = HISTORY + 1
    per_hour = []
    for h in range(first, first + 4):
        per_hour.append(flags(story.ingest(h, h + 1, extra={"build-01": [_miner(first, 4)]}, only={"build-01"})))
        between = story.start + timedelta(hours=h, minutes=30)
        (result,) = events_ingest(payloads=[{"hostname": "build-01", "timestamp": between.isoformat(), "pid": 9000 + h,
                                             "name": "cron", "exe": "/usr/sbin/cron", "username": "root"}])
        assert result["anomalies"] == []
    assert per_hour[0] == per_hour[1] == []
    assert [(h, n) for h, n, _ in per_hour[2]] == [("build-01", "java")]
    assert any(r.startswith("CPU 390% for 3 snapshots") for r in per_hour[2][0][2])
