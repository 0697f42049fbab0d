import pytest

from audit.models import AuditEvent
from audit.services import audit_record


@pytest.mark.django_db
def test_security_admin_reads_events_newest_first_and_filters(admin_client, admin_user):
    audit_record(action="model.activated", actor=admin_user, resource_type="model_version", resource_id=1)
    audit_record(action="retrain.started", actor=admin_user, resource_type="training_run", resource_id=7, details={"reason": "x"})
    response = admin_client.get("/api/audit/events/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [e["action"] for e in results] == ["retrain.started", "model.activated"]
    assert results[0]["actor"] == "sam@voltaxe.test" and results[0]["resource_id"] == "7"
    assert results[0]["details"] == {"reason": "x"}
    filtered = admin_client.get("/api/audit/events/?action=model.activated").json()["results"]
    assert [e["action"] for e in filtered] == ["model.activated"]


@pytest.mark.django_db
def test_analyst_may_not_read_the_audit_log(analyst_client):
    assert analyst_client.get("/api/audit/events/").status_code == 403


@pytest.mark.django_db
def test_actor_name_survives_the_user(admin_user):
    event = audit_record(action="x", actor=admin_user)
    admin_user.delete()
    event.refresh_from_db()
    assert event.actor is None and event.actor_name == "sam@voltaxe.test"


@pytest.mark.django_db(transaction=True)
def test_a_failure_to_audit_is_logged_not_raised(admin_user, caplog, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("audit table gone")

    monkeypatch.setattr(AuditEvent.objects, "create", boom)
    assert audit_record(action="retrain.started", actor=admin_user) is None
    assert "Could not record audit event retrain.started" in caplog.text


@pytest.mark.django_db
def test_admin_for_audit_events_is_read_only(client, admin_user):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@x.test", "pw")
    client.force_login(root)
    event = audit_record(action="x", actor=admin_user)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_identical_refusals_are_counted_on_one_event_until_they_pause(admin_client, analyst):
    from datetime import timedelta

    import time_machine
    from django.test import RequestFactory
    from django.utils import timezone

    request = RequestFactory().post("/api/axon/retrain", HTTP_USER_AGENT="x" * 600, REMOTE_ADDR="10.0.0.9")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(100):
            audit_record(action="retrain.denied", actor=analyst, request=request, outcome=AuditEvent.Outcome.DENIED,
                         aggregate=True)
    with time_machine.travel(start + timedelta(minutes=9), tick=False):
        audit_record(action="retrain.denied", actor=analyst, request=request, outcome=AuditEvent.Outcome.DENIED,
                     aggregate=True)
        # Another address is another event.
        other = RequestFactory().post("/", REMOTE_ADDR="10.0.0.10")
        audit_record(action="retrain.denied", actor=analyst, request=other, outcome=AuditEvent.Outcome.DENIED,
                     aggregate=True)
    with time_machine.travel(start + timedelta(minutes=30), tick=False):
        audit_record(action="retrain.denied", actor=analyst, request=request, outcome=AuditEvent.Outcome.DENIED,
                     aggregate=True)
    events = admin_client.get("/api/audit/events/?action=retrain.denied").json()["results"]
    assert [(e["ip_address"], e["count"]) for e in events] == [("10.0.0.9", 1), ("10.0.0.10", 1), ("10.0.0.9", 101)]
    first = events[2]
    assert first["timestamp"] != first["last_seen"]
    assert len(first["user_agent"]) <= 200
