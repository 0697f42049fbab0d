"""Issue 11 replayed through the API: a press approves exactly what the person saw and ticked.

1. A miner on one host, then 205 one-off names on another: the preview shows all of them
   (complete, paged, counted); what the admin unticks and what is flagged after the preview
   are never approved, and the next miner snapshot is still flagged.
2. The demo's intruder (from /tmp, run by www-data under nginx) is high risk and unticked by
   default: a press that names nothing leaves it flagged.
"""
from __future__ import annotations

import string
from datetime import timedelta
from itertools import product

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from axon.models import Approval, TrainingRun
from axon.services.runs import retrain_run
from telemetry.demo import HOSTS
from telemetry.models import AgentKey, ProcessRecord
from tests import fleet

pytestmark = pytest.mark.django_db

MINER = {"name": "xmrig", "exe": "/var/tmp/xmrig", "username": "builder", "cpu_percent": 97.0}
ONE_OFFS = ["oneoff" + a + b for a, b in product(string.ascii_lowercase, repeat=2)][:205]
PREVIEW, RETRAIN = "/api/axon/retrain/preview/", "/api/axon/retrain"


def agent(host: str) -> APIClient:
    """An agent key for one host (named after it, so it is bound to it)."""
    _, key = AgentKey.objects.create_key(name=host)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def snapshot(host: str, extra: list[dict], *, seconds_ago: int) -> dict:
    """The host's everyday processes (as in its history), plus `extra` started by its first process."""
    os_name, procs = next((o, p) for h, o, p in HOSTS if h == host)
    procs = [p for p in procs if p[5] >= 0.5]  # the ones that run every hour, not the rare nightly jobs
    pids = {p[0]: 100 + i for i, p in enumerate(procs)}
    processes = [{"name": p[0], "pid": 100 + i, "ppid": pids.get(p[3], 1), "exe": p[1], "username": p[2]}
                 for i, p in enumerate(procs)]
    processes += [{"pid": 5000 + i, "ppid": 100, **x} for i, x in enumerate(extra)]
    when = timezone.now().replace(microsecond=0) - timedelta(seconds=seconds_ago)
    return {"hostname": host, "os": os_name, "timestamp": when.isoformat(), "processes": processes}


def post(client: APIClient, payload: dict) -> set[str]:
    response = client.post("/api/telemetry/snapshots/", payload, format="json")
    assert response.status_code == 201, response.content
    return {a["name"] for a in response.json()["anomalies"]}


def full_preview(client: APIClient, limit: int = 50, hostname: str = "") -> tuple[int, list[dict]]:
    """Every page of the preview (of one host's items if `hostname`), following `next`."""
    body = client.get(f"{PREVIEW}?limit={limit}" + (f"&hostname={hostname}" if hostname else "")).json()
    total, items = body["total"], list(body["will_learn"])
    while body["next"]:
        body = client.get(body["next"]).json()
        items += body["will_learn"]
    return total, items


def press(client: APIClient, body: dict) -> TrainingRun:
    """Press through the API, then carry the queued run out as the worker does."""
    response = client.post(RETRAIN, body, format="json")
    assert response.status_code == 200 and response.json()["status"] == "training_started", response.content
    run = retrain_run(run_id=response.json()["run_id"])
    assert run.status == "succeeded", run.message
    return run


@pytest.fixture
def miner_and_one_offs(db, settings):
    """A model on the demo history; then a miner on build-01 and 205 one-off names on pg-main (not a flood: the
    budget of new programs one host may put in front of people is raised here; tests/axon/test_flood.py lowers it)."""
    settings.HOST_NEW_PROGRAMS_BUDGET = 1000
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    build, pg = agent("build-01"), agent("pg-main")
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=600))
    flagged = post(pg, snapshot("pg-main", [{"name": n, "exe": f"/usr/local/bin/{n}", "username": "postgres"}
                                            for n in ONE_OFFS], seconds_ago=590))
    assert set(ONE_OFFS) <= flagged
    return {"build": build, "pg": pg, "split": split}


def test_the_preview_is_complete_paged_and_counted(miner_and_one_offs, admin_client):
    total, items = full_preview(admin_client, limit=50)
    names = [i["name"] for i in items]
    assert total == len(items) == 206 and len(set(i["key"] for i in items)) == 206
    assert set(names) == set(ONE_OFFS) | {"xmrig"}
    miner = next(i for i in items if i["name"] == "xmrig")
    assert miner["risk"] == "high" and miner["default"] is False and miner["hostnames"] == ["build-01"]
    assert any("temporary or world-writable folder" in r for r in miner["risk_reasons"])
    unticked = [i["name"] for i in items if not i["default"]]
    assert unticked[0] == "xmrig", "of what is left unticked, high-risk items come first, where a person sees them"
    # One page of everything by default: the contract says never cut silently.
    assert admin_client.get(PREVIEW).json()["next"] is None


def test_unticking_everything_shown_approves_nothing_not_even_what_was_flagged_after_the_preview(
        miner_and_one_offs, admin_client):
    total, items = full_preview(admin_client)
    # Flagged after the person loaded the preview: never shown to them.
    assert "latecomer" in post(miner_and_one_offs["pg"], snapshot(
        "pg-main", [{"name": "latecomer", "exe": "/usr/local/bin/latecomer", "username": "postgres"}], seconds_ago=580))
    run = press(admin_client, {"approve": [], "reason": "untick all"})
    assert run.approved == []
    assert not Approval.objects.exists()
    assert ProcessRecord.objects.filter(name="xmrig", flagged=True, status="open").exists()
    assert ProcessRecord.objects.filter(name="latecomer", flagged=True, status="open").exists()
    # The next miner snapshot is still an anomaly.
    assert "xmrig" in post(miner_and_one_offs["build"], snapshot("build-01", [MINER], seconds_ago=5))
    event = AuditEvent.objects.get(action="retrain.started", resource_id=str(run.pk))
    assert event.details["approved"] == [] and len(event.details["unticked"]) == total + 1  # + the latecomer


@pytest.mark.clock
def test_ticking_the_one_offs_approves_exactly_them_never_the_miner_nor_the_late_flag(miner_and_one_offs, admin_client):
    _, items = full_preview(admin_client)
    ticked = [i["key"] for i in items if i["name"] != "xmrig"]
    post(miner_and_one_offs["pg"], snapshot(
        "pg-main", [{"name": "latecomer", "exe": "/usr/local/bin/latecomer", "username": "postgres"}], seconds_ago=580))
    run = press(admin_client, {"approve": ticked})
    assert sorted(a["key"] for a in run.approved) == sorted(ticked)
    approved = set(Approval.objects.values_list("name", flat=True))
    assert approved == set(ONE_OFFS)
    assert set(Approval.objects.values_list("hostname", flat=True)) == {"pg-main"}
    assert "xmrig" in post(miner_and_one_offs["build"], snapshot("build-01", [MINER], seconds_ago=5))
    assert "latecomer" in post(miner_and_one_offs["pg"], snapshot(
        "pg-main", [{"name": "latecomer", "exe": "/usr/local/bin/latecomer", "username": "postgres"}], seconds_ago=4))
    event = AuditEvent.objects.get(action="retrain.started", resource_id=str(run.pk))
    miner_key = next(i["key"] for i in items if i["name"] == "xmrig")
    assert sorted(event.details["approved"]) == sorted(ticked)
    assert miner_key in event.details["unticked"]


def test_a_key_that_is_no_longer_a_candidate_is_not_approved_and_is_reported(miner_and_one_offs, admin_client, analyst_client):
    _, items = full_preview(admin_client)
    miner_key = next(i["key"] for i in items if i["name"] == "xmrig")
    triage = analyst_client.post("/api/axon/alerts/triage/", {"keys": [miner_key], "status": "malicious",
                                                             "note": "a miner"}, format="json")
    assert triage.status_code == 200, triage.content
    assert triage.json()["results"][0]["status"] == "malicious"
    assert miner_key not in {i["key"] for i in full_preview(admin_client)[1]}
    run = press(admin_client, {"approve": [miner_key, "0" * 24]})
    assert run.approved == []
    assert not Approval.objects.filter(name="xmrig").exists()
    event = AuditEvent.objects.get(action="retrain.started", resource_id=str(run.pk))
    assert sorted(event.details["not_approvable"]) == sorted([miner_key, "0" * 24])


# --- point 2: the demo ------------------------------------------------------------------------------


@pytest.fixture
def demo_flagged(db):
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)


@pytest.mark.clock
def test_the_demo_intruder_is_high_risk_unticked_and_a_default_press_leaves_it_flagged(demo_flagged, admin_client):
    items = admin_client.get(PREVIEW).json()["will_learn"]
    by_name = {i["name"]: i for i in items}
    assert set(by_name) == {"Figma.exe", "kdevtmpfsi"}
    intruder, app = by_name["kdevtmpfsi"], by_name["Figma.exe"]
    assert (intruder["risk"], intruder["default"]) == ("high", False)
    assert "runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)" in intruder["risk_reasons"]
    assert "started by nginx, a web server, which should not start programs" in intruder["risk_reasons"]
    assert (app["risk"], app["default"], app["risk_reasons"]) == ("low", True, [])

    run = press(admin_client, {})  # no approve, no exclude: nobody unticked anything
    assert [a["name"] for a in run.approved] == ["figma.exe"]
    assert set(Approval.objects.values_list("name", flat=True)) == {"figma.exe"}
    assert ProcessRecord.objects.filter(name="kdevtmpfsi", flagged=True, status="open").exists()
    assert not ProcessRecord.objects.filter(name="Figma.exe", flagged=True).exists()
    runs = admin_client.get(f"/api/axon/runs/{run.pk}/").json()
    assert [a["name"] for a in runs["approved"]] == ["figma.exe"]


# --- issue 19: a revoked approval teaches nothing --------------------------------------------------


def test_a_program_that_ran_while_approved_is_flagged_again_after_the_approval_is_revoked(
        miner_and_one_offs, admin_client):
    """Approve a miner, let it run (its snapshots now pass as ordinary), revoke, retrain: flagged again."""
    _, items = full_preview(admin_client)
    miner_key = next(i["key"] for i in items if i["name"] == "xmrig")
    press(admin_client, {"approve": [miner_key], "confirm_high_risk": [miner_key]})
    build = miner_and_one_offs["build"]
    for seconds_ago in (400, 300, 200):
        assert "xmrig" not in post(build, snapshot("build-01", [MINER], seconds_ago=seconds_ago))
    approval = Approval.objects.get(name="xmrig")
    assert admin_client.post(f"/api/axon/approvals/{approval.pk}/revoke/").status_code == 200
    # What was scored while the approval stood is an open flag again, so no training learns it.
    miner = ProcessRecord.objects.filter(name="xmrig")
    assert miner.count() == 4 and miner.filter(flagged=True, status="open").count() == 4
    event = AuditEvent.objects.get(action="approval.revoked", outcome="success")
    assert event.details["reopened"] == 4
    # Revoked is a decision to look again: the next default press does not approve it back.
    item = next(i for i in full_preview(admin_client)[1] if i["key"] == miner_key)
    assert item["default"] is False and "acknowledged: someone is looking into it (approval revoked by sam@voltaxe.test)" in item[
        "held_reasons"]
    assert fleet.train().status == "succeeded"
    assert not Approval.objects.exists()
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=5))


def test_a_revoked_approval_stops_being_honoured_at_once_not_at_the_next_model(miner_and_one_offs, admin_client, settings):
    """Between the revoke and the next model, the miner goes on running: the serving model flags it (it used to let it
    through, and the next training then learned those snapshots as ordinary data)."""
    settings.MODEL_REFRESH_SECONDS = 0
    _, items = full_preview(admin_client)
    miner_key = next(i["key"] for i in items if i["name"] == "xmrig")
    press(admin_client, {"approve": [miner_key], "confirm_high_risk": [miner_key]})
    build = miner_and_one_offs["build"]
    assert "xmrig" not in post(build, snapshot("build-01", [MINER], seconds_ago=400))
    approval = Approval.objects.get(name="xmrig")
    assert admin_client.post(f"/api/axon/approvals/{approval.pk}/revoke/").status_code == 200
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=300))
    assert fleet.train().status == "succeeded"
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=200))


# --- issue 19 point 3: a press is what a person can review (the flood itself: test_flood.py) ---------


def test_a_press_may_not_approve_more_than_a_person_can_review(miner_and_one_offs, admin_client, settings):
    settings.MAX_APPROVALS_PER_PRESS = 100
    _, items = full_preview(admin_client)
    keys = [i["key"] for i in items if i["name"] in ONE_OFFS]
    refused = admin_client.post(RETRAIN, {"approve": keys}, format="json")
    assert refused.status_code == 400, refused.content
    assert refused.json()["detail"].startswith(
        "approve: this press would approve 205 items, more than the 100 one press may approve")
    assert not TrainingRun.objects.filter(trigger="api").exists()
    assert AuditEvent.objects.get(action="retrain.invalid").details["errors"] == {"approve": ["more than 100 items"]}
    assert len(press(admin_client, {"approve": keys[:100]}).approved) == 100


def test_a_default_press_approves_no_more_than_the_cap_and_the_rest_say_why(miner_and_one_offs, admin_client, settings):
    settings.MAX_APPROVALS_PER_PRESS, settings.HOST_NEW_PROGRAMS_BUDGET = 100, 1000
    _, items = full_preview(admin_client)
    ticked = [i for i in items if i["default"]]
    held = [i for i in items if i["name"] in ONE_OFFS and not i["default"]]
    assert len(ticked) == 100 and len(held) == 105
    assert held[0]["held_reasons"] == ["beyond the 100 items one press may approve; press again once this run is done"]
    run = press(admin_client, {})
    assert sorted(a["key"] for a in run.approved) == sorted(i["key"] for i in ticked)
