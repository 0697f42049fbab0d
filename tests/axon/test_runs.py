"""What happens when training goes wrong: the previous model keeps serving, and the run says why."""
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.actors import Actor
from audit.models import AuditEvent
from axon.models import ModelVersion, TrainingRun
from axon.scoring import model_cache
from axon.services import publish
from axon.services.press import retrain_request
from axon.services.runs import retrain_run, runs_reap
from axon.store import artifact_load
from tests import fleet


@pytest.fixture
def v1(db):
    fleet.history(days=2)
    run = fleet.train()
    assert run.status == "succeeded", run.message
    return ModelVersion.objects.get(is_active=True)


def events(run) -> list[str]:
    events = AuditEvent.objects.filter(resource_type="training_run", resource_id=str(run.pk)).order_by("id")
    return list(events.values_list("action", flat=True))


@pytest.mark.django_db
def test_a_successful_run_records_the_version_the_file_and_the_audit_trail(v1, admin_user):
    run = fleet.train(user=admin_user)
    assert run.status == "succeeded" and run.progress == 100 and run.stage == "done"
    v2 = ModelVersion.objects.get(version=2)
    assert run.model_version == v2 and v2.is_active and v2.run == run
    assert not ModelVersion.objects.get(version=1).is_active
    assert v2.records > 0 and v2.processes >= 10 and v2.hosts == 6 and len(v2.sha256) == 64
    assert v2.feature_names and v2.sklearn_version and "recent_flag_rate" in v2.metrics
    artifact_load(v2.artifact_path, v2.sha256)  # the file is there and verifies
    assert "Activating v2" in run.log
    assert events(run) == ["retrain.started", "retrain.succeeded"]
    done = AuditEvent.objects.get(action="retrain.succeeded", resource_id=str(run.pk))
    assert done.details["model_version"] == 2 and done.details["records"] == v2.records and done.details["log_head"]


@pytest.mark.django_db
def test_too_little_data_is_rejected_with_what_is_missing(agent_client):
    from tests.payloads import rich

    for i in range(3):
        agent_client.post("/api/telemetry/snapshots/", rich("h", minutes_ago=i), format="json")
    run = fleet.train()
    assert run.status == "rejected"
    assert "at least 50 are needed" in run.message
    assert not ModelVersion.objects.exists()
    assert events(run)[-1] == "retrain.rejected"


@pytest.mark.django_db
def test_a_crash_halfway_leaves_the_previous_version_active_and_loadable(v1, monkeypatch):

    def crash(*args, **kwargs):
        raise MemoryError("simulated crash in the middle of training")

    monkeypatch.setattr(publish, "train", crash)  # where the run looks it up
    run = fleet.train()
    assert run.status == "failed" and "simulated crash" in run.message and "previous model keeps serving" in run.message
    assert ModelVersion.objects.get(is_active=True) == v1
    assert ModelVersion.objects.count() == 1
    model_cache.reset()
    assert model_cache.get()[0] == 1
    assert events(run)[-1] == "retrain.failed"


@pytest.mark.django_db
def test_a_run_past_its_timeout_ends_timed_out_with_the_old_model_active(v1, monkeypatch, settings):
    import time


    real_train = publish.train
    settings.RETRAIN_TIMEOUT_SECONDS = 1

    def slow(*args, **kwargs):
        time.sleep(1.2)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(publish, "train", slow)  # where the run looks it up
    run = fleet.train()
    assert run.status == "timed_out" and "1 seconds" in run.message
    assert ModelVersion.objects.get(is_active=True) == v1
    assert events(run)[-1] == "retrain.timed_out"


@pytest.mark.django_db
def test_reaper_ends_runs_whose_worker_died_or_overran(settings, db):
    settings.RETRAIN_TIMEOUT_SECONDS, settings.RETRAIN_REAP_GRACE_SECONDS = 60, 10
    now = timezone.now()
    silent = TrainingRun.objects.create(trigger="api", status="running", stage="training",
                                        started_at=now - timedelta(seconds=30), heartbeat_at=now - timedelta(seconds=20))
    assert runs_reap(now=now) == 1
    silent.refresh_from_db()
    assert silent.status == "failed" and "stopped responding during 'training'" in silent.message
    overran = TrainingRun.objects.create(trigger="api", status="running", started_at=now - timedelta(seconds=80),
                                         heartbeat_at=now)
    assert runs_reap(now=now) == 1
    overran.refresh_from_db()
    assert overran.status == "timed_out"
    alive = TrainingRun.objects.create(trigger="api", status="running", started_at=now - timedelta(seconds=5), heartbeat_at=now)
    assert runs_reap(now=now) == 0
    alive.refresh_from_db()
    assert alive.status == "running"
    assert AuditEvent.objects.filter(action="retrain.failed", details__reaped=True).count() == 1
    assert AuditEvent.objects.filter(action="retrain.timed_out").count() == 1


@pytest.mark.django_db
def test_a_queued_run_nobody_picks_up_is_failed_with_a_hint(settings, db):
    settings.RETRAIN_TIMEOUT_SECONDS, settings.RETRAIN_REAP_GRACE_SECONDS = 60, 10
    run = TrainingRun.objects.create(trigger="api")
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=100))
    runs_reap()
    run.refresh_from_db()
    assert run.status == "failed" and "manage.py qcluster" in run.message


@pytest.mark.django_db
def test_a_run_is_never_carried_out_twice(v1):
    outcome = retrain_request(actor=Actor(), enqueue=False)
    retrain_run(run_id=outcome.run.pk)
    again = retrain_run(run_id=outcome.run.pk)
    assert again.status == "succeeded"
    assert ModelVersion.objects.count() == 2


@pytest.mark.django_db
def test_the_person_who_pressed_gets_an_email(v1, admin_user, mailoutbox):
    run = fleet.train(user=admin_user)
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["sam@voltaxe.test"] and f"run {run.pk}" in mailoutbox[0].subject
    assert "Model v2 is active" in mailoutbox[0].body


@pytest.mark.django_db
def test_a_failed_run_gives_back_what_it_approved(v1, monkeypatch, admin_user):
    from axon.models import Approval
    from telemetry.models import ProcessRecord

    fleet.recent(timezone.now() - timedelta(hours=2))
    assert ProcessRecord.objects.filter(flagged=True, status="open").exists()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "train", crash)  # where the run looks it up
    run = fleet.train(user=admin_user)
    assert run.status == "failed"
    assert not Approval.objects.exists()
    assert not ProcessRecord.objects.filter(status="approved").exists()
    assert ProcessRecord.objects.filter(flagged=True, status="open").exists()


@pytest.mark.django_db
def test_after_an_upgrade_the_maintenance_job_trains_a_model_of_the_new_features_at_once(v1):
    from axon import tasks
    from axon.detector.features import FEATURE_VERSION

    # The active model was built by an older release, whose feature contract this code no longer computes.
    ModelVersion.objects.filter(pk=v1.pk).update(feature_version=FEATURE_VERSION - 1)
    assert "upgrade run" in tasks.maintenance_task()
    run = TrainingRun.objects.latest("created_at")
    assert (run.status, run.trigger) == (TrainingRun.Status.QUEUED, TrainingRun.Trigger.SCHEDULE)
    assert run.reason == (f"upgrade: the active model v1 was built for feature version {FEATURE_VERSION - 1}, "
                          f"this code computes version {FEATURE_VERSION}")
    assert "upgrade run" not in tasks.maintenance_task()  # one try an hour, not one a minute
    assert retrain_run(run_id=run.pk).status == "succeeded"
    active = ModelVersion.objects.get(is_active=True)
    assert (active.version, active.feature_version) == (2, FEATURE_VERSION)
    assert not TrainingRun.objects.get(pk=run.pk).approved  # like a scheduled run, it approves nothing
    assert "upgrade run" not in tasks.maintenance_task()  # the active model is of this code's contract now
