"""The panic button clears what a person approves, and nothing else."""
from datetime import timedelta

import pytest
from django.utils import timezone

from axon.models import Approval, ModelVersion, TrainingRun
from telemetry.models import ProcessRecord, Snapshot
from tests import fleet

NEW_APP, INTRUDER = "Figma.exe", "kdevtmpfsi"


def flagged_names(results) -> set[str]:
    return {a["name"] for r in results for a in r["anomalies"]}


@pytest.fixture
def fleet_with_model(db):
    split = fleet.history()
    run = fleet.train()
    assert run.status == "succeeded", run.message
    return split


@pytest.mark.clock
@pytest.mark.django_db
def test_first_model_flags_only_what_is_new(fleet_with_model):
    results = fleet.recent(fleet_with_model)
    assert flagged_names(results) == {NEW_APP, INTRUDER}
    record = ProcessRecord.objects.filter(name=INTRUDER, flagged=True).first()
    assert "never seen on this host" in record.reasons and record.status == "open"
    assert record.model_number == ModelVersion.objects.get(is_active=True).version


@pytest.mark.clock
@pytest.mark.django_db
def test_preview_lists_what_a_press_would_approve(fleet_with_model, admin_client):
    fleet.recent(fleet_with_model)
    body = admin_client.get("/api/axon/retrain/preview/").json()
    names = {item["name"] for item in body["will_learn"]}
    assert names == {NEW_APP, INTRUDER}
    app = next(i for i in body["will_learn"] if i["name"] == NEW_APP)
    assert app["hostnames"] == ["laptop-ana"] and app["observations"] > 0 and app["first_seen"]
    assert body["active_model"] == 1
    excluded = admin_client.get(f"/api/axon/retrain/preview/?exclude={INTRUDER}").json()
    assert {i["name"] for i in excluded["will_learn"]} == {NEW_APP}


@pytest.mark.clock
@pytest.mark.django_db
def test_press_clears_the_approved_app_and_keeps_the_excluded_one(fleet_with_model, admin_user):
    fleet.recent(fleet_with_model)
    run = fleet.train(user=admin_user, exclude=[INTRUDER], reason="designer installed Figma")
    assert run.status == "succeeded", run.message
    assert ModelVersion.objects.get(is_active=True).version == 2
    approval = Approval.objects.get()
    assert (approval.hostname, approval.name, approval.approved_by_name, approval.run_id) == (
        "laptop-ana", "figma.exe", "sam@voltaxe.test", run.pk)
    # Re-scored at once: the app's flags leave the dashboard, the intruder's stay open.
    assert not ProcessRecord.objects.filter(name=NEW_APP, flagged=True).exists()
    assert ProcessRecord.objects.filter(name=INTRUDER, flagged=True, status="open").exists()
    assert Snapshot.objects.filter(endpoint__hostname="laptop-ana", anomaly_count__gt=0).count() == 0
    # New snapshots: the app is ordinary now, the intruder still is not.
    later = fleet.ingest([_snapshot_with(NEW_APP), _snapshot_with(INTRUDER, host="api-01")])
    assert flagged_names(later) == {INTRUDER}


@pytest.mark.django_db
def test_an_approval_is_specific_to_path_and_parent(fleet_with_model, admin_user):
    fleet.recent(fleet_with_model)
    fleet.train(user=admin_user, exclude=[INTRUDER])
    elsewhere = fleet.ingest([_snapshot_with(NEW_APP, exe="C:\\Users\\Public\\Figma.exe")])
    assert flagged_names(elsewhere) == {NEW_APP}


@pytest.mark.django_db
def test_scheduled_retrain_approves_nothing(fleet_with_model):
    fleet.recent(fleet_with_model)
    run = fleet.train(door=TrainingRun.Trigger.SCHEDULE)
    assert run.status == "succeeded"
    assert not Approval.objects.exists()
    still = fleet.ingest([_snapshot_with(NEW_APP), _snapshot_with(INTRUDER, host="api-01")])
    assert flagged_names(still) == {NEW_APP, INTRUDER}


@pytest.mark.django_db
def test_snapshots_stored_without_a_model_are_scored_once_one_is_active(db):
    from axon.services.versions import snapshots_score_pending

    split = fleet.history(days=2)
    results = fleet.recent(split)
    assert all(r["model_version"] is None for r in results)
    fleet.train()
    assert Snapshot.objects.filter(model_number__isnull=True).exists()
    snapshots_score_pending()
    day_ago = timezone.now() - timedelta(hours=24)
    assert not Snapshot.objects.filter(model_number__isnull=True, timestamp__gte=day_ago).exists()
    # The first model learned from everything stored before it, these included.
    assert set(ProcessRecord.objects.filter(flagged=True).values_list("name", flat=True)) <= {NEW_APP, INTRUDER}
    assert not ProcessRecord.objects.filter(flagged__isnull=True, observed_at__gte=day_ago).exists()
    # Older history, which the model learned from, is not judged afresh.
    assert Snapshot.objects.filter(model_number__isnull=True, timestamp__lt=day_ago).exists()


def _snapshot_with(name, host="laptop-ana", exe=None):
    from datetime import timedelta

    from django.utils import timezone

    from telemetry.demo import HOSTS
    from telemetry.demo import INTRUDER as INTRUDER_ROW
    from telemetry.demo import NEW_APP as NEW_APP_ROW

    row = {NEW_APP: NEW_APP_ROW[1], INTRUDER: INTRUDER_ROW[1]}[name]
    # What runs every hour: a rare job turning up at an arbitrary time is news of its own.
    procs = [p for p in dict((h, p) for h, _, p in HOSTS)[host] if p[5] >= 0.5]
    parent_pid = {"laptop-ana": 4000, "api-01": 5000}[host]
    processes = [{"name": p[0], "pid": parent_pid + i, "ppid": 1, "exe": p[1], "username": p[2]} for i, p in enumerate(procs)]
    parent_index = next(i for i, p in enumerate(procs) if p[0] == row[3])
    processes.append({"name": row[0], "pid": 9999, "ppid": parent_pid + parent_index, "exe": exe or row[1], "username": row[2]})
    os_name = dict((h, o) for h, o, _ in HOSTS)[host]
    return {"hostname": host, "os": os_name, "timestamp": (timezone.now() - timedelta(seconds=5)).isoformat(),
            "processes": processes}
