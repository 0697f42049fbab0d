"""The press's doors (issue 9 §3 items 5 and 7, issue 11): sliding-window limits, the same refusals and audit
for every door, triage and revocation through the API, the admin's review page."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from axon.models import Alert, Approval, TrainingRun
from axon.services.runs import runs_reap
from axon.services.selection import retrain_preview
from tests import fleet
from tests.conftest import _user, client_for

pytestmark = pytest.mark.django_db
URL = "/api/axon/retrain"


def window_edge():
    """Half a second before the next multiple of five minutes: where a fixed five-minute window ends."""
    now = timezone.now().replace(microsecond=0)
    start = now - timedelta(minutes=now.minute % 5, seconds=now.second)
    return start + timedelta(minutes=5) - timedelta(seconds=0.5)


def test_the_per_user_limit_is_a_sliding_window_even_across_a_clock_window_edge(admin_client):
    """Issue 9 §3.5: the same admin started two runs 9 s apart across a window edge."""
    edge = window_edge()
    with time_machine.travel(edge, tick=False):
        assert admin_client.post(URL).status_code == 200
    TrainingRun.objects.update(status="succeeded")
    with time_machine.travel(edge + timedelta(seconds=9), tick=False):
        again = admin_client.post(URL)
        assert again.status_code == 429
        assert again.json()["retry_after"] == int(again["Retry-After"]) == 291
    with time_machine.travel(edge + timedelta(seconds=299), tick=False):
        assert admin_client.post(URL).json()["retry_after"] == 1
    with time_machine.travel(edge + timedelta(seconds=301), tick=False):
        assert admin_client.post(URL).status_code == 200
    assert TrainingRun.objects.count() == 2
    # Refused presses use nothing up: the limit counts runs started, not attempts.
    assert AuditEvent.objects.get(action="retrain.rate_limited").count == 2


def test_the_global_limit_slides_too_and_says_when_the_oldest_press_leaves_the_hour(settings, admin_user, other_admin):
    settings.RETRAIN_GLOBAL_RATE = "2/h"
    third = _user("sol", "Security Admin")
    start = timezone.now().replace(minute=59, second=0, microsecond=0)
    for minutes, user in ((0, admin_user), (2, other_admin)):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            assert client_for(user).post(URL).status_code == 200
        TrainingRun.objects.update(status="succeeded")
    with time_machine.travel(start + timedelta(minutes=3), tick=False):
        refused = client_for(third).post(URL)
    assert refused.status_code == 429 and refused.json()["retry_after"] == 57 * 60
    assert "the team has pressed" in refused.json()["detail"]


def test_a_press_whose_audit_write_failed_is_still_counted(admin_user, other_admin, monkeypatch):
    """audit_record swallows its own failures: a limit read from the audit log let such a press go uncounted."""
    def unavailable(**fields):
        raise DatabaseError("the audit table is unavailable")

    monkeypatch.setattr(AuditEvent.objects, "create", unavailable)
    started = client_for(admin_user).post(URL)
    joined = client_for(other_admin).post(URL)
    assert (started.json()["status"], joined.json()["status"]) == ("training_started", "already_running")
    assert not AuditEvent.objects.exists()
    TrainingRun.objects.update(status="succeeded")
    assert [client_for(u).post(URL).status_code for u in (admin_user, other_admin)] == [429, 429]
    assert TrainingRun.objects.count() == 1


@pytest.mark.parametrize("body, field", [
    ('{"reason": "a\\u0000b"}', "reason"), ('{"reason": "x\\ud800"}', "reason"), ('{"approve": "abc"}', "approve"),
    ('{"approve": [5]}', "approve"), ('{"exclude": ["ok", ""]}', "exclude"),
])
def test_a_bad_body_is_400_audited_and_uses_no_limit(admin_client, body, field):
    response = admin_client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"] and response.json()["detail"].endswith("Nothing was started.")
    assert not TrainingRun.objects.exists()
    assert AuditEvent.objects.filter(action="retrain.invalid").exists()
    assert admin_client.post(URL).status_code == 200


def test_an_agent_hammering_the_button_leaves_one_counted_event_with_a_short_user_agent(agent_key):
    """Issue 9 §3.7: 100 denied presses by an agent key in 5 s wrote 100 events with 512-character user agents."""
    client = APIClient(HTTP_USER_AGENT="A" * 512)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {agent_key}")
    for _ in range(100):
        assert client.post(URL, {"reason": "x"}, format="json").status_code == 403
    event = AuditEvent.objects.get(action="retrain.denied")
    assert event.count == 100 and event.outcome == "denied" and event.actor_name == "agent:test-agent"
    assert len(event.user_agent) <= 200
    assert not TrainingRun.objects.exists()


def test_every_door_refuses_and_audits_the_same_way(client, analyst):
    """API, page form and admin: an analyst's press is refused and audited once per door."""
    client_for(analyst).post(URL)
    client.force_login(analyst)
    assert client.post("/live-telemetry/retrain/", {"reason": "x"}).status_code == 403
    analyst.is_staff = True
    analyst.save()
    assert client.post("/admin/axon/trainingrun/retrain/", {"reason": "x"}).status_code == 403
    # Identical refusals are counted on one event (the first door's details), not written one by one.
    event = AuditEvent.objects.get(action="retrain.denied")
    assert (event.count, event.actor_name, event.outcome, event.details["trigger"]) == (3, "ann@voltaxe.test", "denied", "api")
    assert not TrainingRun.objects.exists()


@pytest.fixture
def flagged(db):
    split = fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    fleet.recent(split)


def test_the_admin_review_page_ticks_the_defaults_and_its_press_approves_exactly_what_it_posts(client, admin_user, flagged):
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    keys = {i["name"]: i["key"] for i in retrain_preview()["will_learn"]}
    # The list's button and the list action both lead to the review.
    changelist = client.get("/admin/axon/trainingrun/").content.decode()
    assert "/admin/axon/trainingrun/retrain/" in changelist
    action = client.post("/admin/axon/trainingrun/", {"action": "retrain_model", "_selected_action": [
        TrainingRun.objects.get().pk]})
    assert action.status_code == 302 and action["Location"] == "/admin/axon/trainingrun/retrain/"
    review = client.get("/admin/axon/trainingrun/retrain/").content.decode()
    assert f'value="{keys["Figma.exe"]}" id="approve-{keys["Figma.exe"]}" checked' in review
    assert f'value="{keys["kdevtmpfsi"]}" id="approve-{keys["kdevtmpfsi"]}">' in review
    assert "runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)" in review
    response = client.post("/admin/axon/trainingrun/retrain/", {"approve": [keys["Figma.exe"]], "reason": "new tool"},
                           follow=True)
    run = TrainingRun.objects.get(trigger="admin")
    assert [a["key"] for a in run.approved] == [keys["Figma.exe"]] and run.reason == "new tool"
    assert f"Started training run {run.pk}; it approves 1 item(s)." in response.content.decode()
    event = AuditEvent.objects.get(action="retrain.started", resource_id=str(run.pk))
    assert event.details["approved"] == [keys["Figma.exe"]] and event.details["unticked"] == [keys["kdevtmpfsi"]]


def test_alerts_are_grouped_filtered_paged_and_triaged_by_analysts(analyst_client, flagged):
    body = analyst_client.get("/api/axon/alerts/").json()
    by_name = {a["name"]: a for a in body["results"]}
    assert set(by_name) == {"Figma.exe", "kdevtmpfsi"}
    intruder = by_name["kdevtmpfsi"]
    assert intruder["count"] > 1 and intruder["first_seen"] < intruder["last_seen"]
    seen = (intruder["hostname"], intruder["parent"], intruder["user"], intruder["risk"])
    assert seen == ("api-01", "nginx", "www-data", "high")
    assert intruder["status"] == "open" and intruder["max_score"] > 0 and intruder["reasons"]
    assert [a["name"] for a in analyst_client.get("/api/axon/alerts/?hostname=laptop-ana").json()["results"]] == ["Figma.exe"]
    first = analyst_client.get("/api/axon/alerts/?limit=1").json()
    assert len(first["results"]) == 1 and first["next"]
    assert analyst_client.get(first["next"]).json()["next"] is None
    assert analyst_client.get("/api/axon/alerts/?status=bogus").status_code == 400

    closed = analyst_client.post("/api/axon/alerts/triage/", {"keys": [by_name["Figma.exe"]["key"]], "status": "closed",
                                                              "note": "known tool"}, format="json")
    assert closed.status_code == 200 and closed.json()["results"][0]["status"] == "closed"
    # Closed: hidden from the list and never learned; still listed when asked for by status.
    assert [a["name"] for a in analyst_client.get("/api/axon/alerts/").json()["results"]] == ["kdevtmpfsi"]
    assert [a["note"] for a in analyst_client.get("/api/axon/alerts/?status=closed").json()["results"]] == ["known tool"]
    assert retrain_preview()["total"] == 1
    event = AuditEvent.objects.get(action="alert.triaged")
    figma = by_name["Figma.exe"]["key"]
    assert event.details == {"keys": [figma], "status": "closed", "note": "known tool", "before": {figma: "open"}}
    bad = analyst_client.post("/api/axon/alerts/triage/", {"keys": ["nope"], "status": "closed"}, format="json")
    assert bad.status_code == 400 and "match no alert" in bad.json()["detail"]
    assert analyst_client.post("/api/axon/alerts/triage/", {"keys": [intruder["key"]], "status": "deleted"},
                               format="json").status_code == 400
    assert Alert.objects.count() == 1


def test_a_security_admin_lists_and_revokes_an_approval_effective_from_the_next_model(
        admin_client, analyst_client, admin_user, flagged):
    run = fleet.train(user=admin_user)
    assert run.status == "succeeded"
    approvals = admin_client.get("/api/axon/approvals/").json()["results"]
    assert [(a["name"], a["hostname"], a["run_id"]) for a in approvals] == [("figma.exe", "laptop-ana", run.pk)]
    approval = approvals[0]
    assert approval["key"] == next(a["key"] for a in run.approved)
    assert analyst_client.post(f"/api/axon/approvals/{approval['id']}/revoke/").status_code == 403
    revoked = admin_client.post(f"/api/axon/approvals/{approval['id']}/revoke/")
    assert revoked.status_code == 200 and "next model version" in revoked.json()["detail"]
    assert not Approval.objects.exists()
    event = AuditEvent.objects.get(action="approval.revoked", outcome="success")
    assert event.details["name"] == "figma.exe" and event.details["reopened"] > 0
    assert AuditEvent.objects.filter(action="approval.revoked", outcome="denied").count() == 1
    assert admin_client.post("/api/axon/approvals/99999/revoke/").status_code == 404


def test_reading_the_status_the_runs_and_the_page_never_writes(settings, admin_user, mailoutbox):
    """Issue 10: GET never writes (the page's poll used to reap runs and send e-mail)."""
    settings.RETRAIN_TIMEOUT_SECONDS, settings.RETRAIN_REAP_GRACE_SECONDS = 60, 10
    stale = TrainingRun.objects.create(trigger="api", status="running", started_at=timezone.now() - timedelta(seconds=300),
                                       heartbeat_at=timezone.now() - timedelta(seconds=200), triggered_by=admin_user)
    browser = Client()
    browser.force_login(admin_user)
    for url in ("/api/axon/status/", "/api/axon/runs/", f"/api/axon/runs/{stale.pk}/", "/api/axon/retrain/preview/",
                "/live-telemetry/", "/live-telemetry/data/", "/live-telemetry/preview/", "/healthz"):
        assert browser.get(url).status_code == 200, url
    before = TrainingRun.objects.values().get(pk=stale.pk)
    assert before["status"] == "running" and before["finished_at"] is None
    assert not AuditEvent.objects.exists() and not mailoutbox
    assert runs_reap() == 1  # the maintenance task's job
    assert len(mailoutbox) == 1


def test_a_misspelt_limit_is_a_system_check_error_not_a_500_at_the_first_press(settings):
    from django.core.checks import run_checks

    settings.RETRAIN_USER_RATE = "1 per 5 minutes"
    errors = [e for e in run_checks() if e.id == "axon.E002"]
    assert len(errors) == 1 and "RETRAIN_USER_RATE" in errors[0].msg
    # One parser for every rate: what the log-in limits accept (seconds when no unit) the press accepts too.
    for rate in ("1/5m", "2/30", "10/H"):
        settings.RETRAIN_USER_RATE = rate
        assert not [e for e in run_checks() if e.id == "axon.E002"], rate
