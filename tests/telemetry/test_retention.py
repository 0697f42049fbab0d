from datetime import timedelta

import pytest
from django.utils import timezone

from audit.actors import Actor
from axon.services.press import retrain_request
from telemetry.models import ProcessRecord, Snapshot
from telemetry.tasks import retention_task
from tests.payloads import rich


@pytest.mark.django_db
def test_retention_deletes_old_telemetry_in_batches_and_keeps_the_rest(agent_client, settings):
    settings.RETENTION_DAYS = 30
    old = rich("old-host")
    old["timestamp"] = (timezone.now() - timedelta(days=31)).isoformat()
    assert agent_client.post("/api/telemetry/snapshots/", old, format="json").status_code == 201
    for i in range(3):
        assert agent_client.post("/api/telemetry/snapshots/", rich("new-host", minutes_ago=i), format="json").status_code == 201
    assert retention_task() == "deleted 1 snapshot(s) older than 30 days"
    assert Snapshot.objects.count() == 3 and not Snapshot.objects.filter(endpoint__hostname="old-host").exists()
    assert ProcessRecord.objects.count() == 9


@pytest.mark.django_db
def test_retention_can_be_switched_off(settings):
    settings.RETENTION_DAYS = 0
    assert retention_task() == "retention is off"


@pytest.mark.django_db
def test_schedules_follow_the_settings(settings):
    from django_q.models import Schedule

    from axon.apps import schedules_sync

    settings.RETRAIN_SCHEDULE_MINUTES = 0
    schedules_sync()
    assert not Schedule.objects.filter(name="axon: scheduled retrain").exists()
    settings.RETRAIN_SCHEDULE_MINUTES = 60
    schedules_sync()
    assert Schedule.objects.get(name="axon: scheduled retrain").minutes == 60
    assert Schedule.objects.filter(name="axon: maintenance").exists()


@pytest.mark.django_db
def test_scheduled_retrain_task_coalesces_with_a_run_in_flight(admin_user):
    from axon.models import TrainingRun
    from axon.tasks import scheduled_retrain_task

    first = retrain_request(actor=Actor(user=admin_user, door="api"), enqueue=False)
    assert scheduled_retrain_task() == f"run {first.run.pk}: already_running"
    assert TrainingRun.objects.count() == 1



@pytest.mark.django_db
def test_migrate_gives_every_app_its_schedules():
    """Each app keeps its own jobs, from the signal migrate sends (not a call a test makes)."""
    from django.core.management.sql import emit_post_migrate_signal
    from django_q.models import Schedule

    Schedule.objects.all().delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert set(Schedule.objects.values_list("name", flat=True)) >= {
        "axon: scheduled retrain", "axon: maintenance", "telemetry: retention", "telemetry: late hosts",
        "auth: expired tokens", "audit: notifications"}
