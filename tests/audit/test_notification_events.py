"""Each kind of event, end to end from the action that causes it, to a real webhook receiver."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command

from audit.actors import Actor
from axon.models import Approval, ModelVersion
from axon.services import publish
from telemetry.agent_keys import agent_host_move
from tests import fleet
from tests.axon.test_exact_approvals import MINER, agent, post, press, snapshot
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
TOOL = {"name": "inventory-agent", "exe": "/usr/local/bin/inventory-agent", "username": "postgres"}


@pytest.fixture
def model(db):
    """A first model on two days of the demo fleet, trained before any channel exists (no messages)."""
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"


def kinds(receiver) -> list[str]:
    return [b["kind"] for b in receiver.bodies()]


def test_an_ingested_intruder_is_news_once_then_spreads_to_another_host(model, hook, sync_queue):
    build, pg = agent("build-01"), agent("pg-main")
    with sync_queue():
        assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=600))
    (new,) = hook.bodies()
    assert new["kind"] == "alert.new" and new["event"] == {"severity": "high"}  # a miner from /var/tmp: high risk
    assert new["host"] == {"name": "build-01"} and new["user"] == {"name": "builder"}
    assert new["process"]["name"] == "xmrig" and new["process"]["executable"] == "/var/tmp/xmrig"
    assert new["summary"].startswith("xmrig started by ") and " on build-01 from /var/tmp/xmrig: " in new["summary"]
    assert new["url"].endswith(f"/alerts/{new['details']['key']}/") and new["details"]["reasons"]
    with sync_queue():  # the same program flagged again on the same host: not news
        assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=300))
    assert kinds(hook) == ["alert.new"]
    with sync_queue():
        assert "xmrig" in post(pg, snapshot("pg-main", [MINER], seconds_ago=200))
    spread = hook.bodies()[-1]
    assert kinds(hook) == ["alert.new", "alert.spread"]
    assert spread["host"] == {"name": "pg-main"} and spread["details"]["other_hosts"] == ["build-01"]
    assert "now also on pg-main" in spread["summary"]


def test_an_ordinary_snapshot_sends_nothing(model, hook, sync_queue):
    with sync_queue():
        assert post(agent("build-01"), snapshot("build-01", [], seconds_ago=60)) == set()
    assert hook.requests == []


def test_a_press_says_who_what_was_approved_and_what_stays_flagged(model, hook, sync_queue, admin_client):
    pg = agent("pg-main")
    with sync_queue():
        post(agent("build-01"), snapshot("build-01", [MINER], seconds_ago=600))
        post(pg, snapshot("pg-main", [TOOL], seconds_ago=590))
        press(admin_client, {"reason": "inventory agent rolled out"})
    pressed = [b for b in hook.bodies() if b["kind"] == "panic.pressed"]
    assert len(pressed) == 1 and pressed[0]["user"] == {"name": "sam@voltaxe.test"}
    assert pressed[0]["details"]["approved"] == ["inventory-agent on pg-main"]
    assert pressed[0]["details"]["left_flagged"] == 1  # the miner, high risk, unticked
    assert "1 program(s) to learn as normal, 1 left flagged" in pressed[0]["summary"]


def test_a_failed_run_is_told(model, hook, sync_queue, monkeypatch):

    def crash(*args, **kwargs):
        raise MemoryError("simulated crash in the middle of training")

    monkeypatch.setattr(publish, "train", crash)  # where the run looks it up
    with sync_queue():
        run = fleet.train()
    assert run.status == "failed"
    (failed,) = [b for b in hook.bodies() if b["kind"] == "run.failed"]
    assert failed["event"]["severity"] == "high" and failed["details"]["run_id"] == run.pk
    assert "simulated crash" in failed["summary"] and failed["url"].endswith(f"/admin/axon/trainingrun/{run.pk}/change/")


def test_a_rejected_run_is_told(hook, sync_queue):
    with sync_queue():
        run = fleet.train()  # the command's press, with no data at all: the gate refuses
    assert run.status == "rejected"
    assert kinds(hook) == ["panic.pressed", "run.rejected"]


def test_a_model_activated_by_hand_is_told_but_not_one_a_run_activates(model, hook, sync_queue, admin_client):
    with sync_queue():
        assert fleet.train().status == "succeeded"
    assert kinds(hook) == ["panic.pressed"]  # the command's press; its run's activation is no news
    with sync_queue():
        assert admin_client.post("/api/axon/models/1/activate/").status_code == 200
    assert ModelVersion.objects.get(is_active=True).version == 1
    activated = hook.bodies()[-1]
    assert kinds(hook) == ["panic.pressed", "model.activated"]
    assert activated["kind"] == "model.activated" and activated["details"] == {"version": 1}
    assert activated["summary"] == "sam@voltaxe.test activated model v1 by hand"


def test_a_revoked_approval_is_told(model, hook, sync_queue, admin_client):
    with sync_queue():
        post(agent("pg-main"), snapshot("pg-main", [TOOL], seconds_ago=590))
        press(admin_client, {"reason": "inventory agent rolled out"})
    approval = Approval.objects.get()
    with sync_queue():
        assert admin_client.post(f"/api/axon/approvals/{approval.pk}/revoke/").status_code == 200
    revoked = hook.bodies()[-1]
    assert revoked["kind"] == "approval.revoked" and revoked["host"] == {"name": "pg-main"}
    assert revoked["details"]["approval_id"] == approval.pk and revoked["details"]["name"] == "inventory-agent"


def test_agent_keys_created_rebound_and_revoked_are_told_without_the_key(hook, sync_queue, admin_user, client, capsys):
    with sync_queue():
        call_command("create_agent", "ws-07")
    key = capsys.readouterr().out.strip()
    from telemetry.models import AgentKey

    old = AgentKey.objects.get(name="ws-07")
    with sync_queue():
        call_command("create_agent", "ws-07-reimaged", "--host", "ws-07", "--move")
    assert kinds(hook) == ["agent.created", "agent.rebound", "agent.created"]
    rebound = hook.bodies()[1]
    assert rebound["host"] == {"name": "ws-07"} and rebound["details"]["previous_key_prefix"] == old.prefix
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    with sync_queue():
        response = client.post(f"/admin/telemetry/agentkey/{old.pk}/change/", {
            "name": old.name, "scope": old.scope, "revoked": "on", "expiry_date_0": "", "expiry_date_1": "",
            "hosts-TOTAL_FORMS": "0", "hosts-INITIAL_FORMS": "0", "hosts-MIN_NUM_FORMS": "0",
            "hosts-MAX_NUM_FORMS": "1000"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert kinds(hook)[-1] == "agent.revoked" and hook.bodies()[-1]["details"]["key_prefix"] == old.prefix
    assert key and not any(key in r["body"].decode() for r in hook.requests)
    with sync_queue():  # moving a host to the key it already has is no news
        agent_host_move(hostname="ws-07", key=AgentKey.objects.get(name="ws-07-reimaged"),
                        actor=Actor(door="admin"))
    assert len(hook.requests) == 4


def test_an_analyst_cannot_make_a_message_by_pressing(model, hook, sync_queue, analyst):
    with sync_queue():
        assert client_for(analyst).post("/api/axon/retrain", {}, format="json").status_code == 403
    assert hook.requests == []


def test_a_silenced_agent_is_said_once_when_late_and_once_when_back(hook, sync_queue):
    """An intruder's first move is to stop the agent: the host goes late, people are told once, and again when
    it reports again; each change is in the audit log."""
    import time_machine
    from django.utils import timezone

    from audit.models import AuditEvent
    from telemetry.tasks import hosts_watch_task
    from tests.telemetry.test_hosts_api import FIVE_MIN, deliver, every_five_minutes
    from tests.telemetry.test_hosts_api import agent as host_agent

    client, _ = host_agent("web-1")
    start = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    last = every_five_minutes(client, "web-1", start)
    with time_machine.travel(last + 10 * FIVE_MIN, tick=False), sync_queue():
        assert hosts_watch_task() == "late: web-1; back: none"
        assert hosts_watch_task() == "late: none; back: none"  # said once
    (late,) = hook.bodies()
    assert late["kind"] == "host.late" and late["host"] == {"name": "web-1"} and late["url"].endswith("/hosts/web-1/")
    assert late["summary"].startswith("web-1 has gone silent: nothing received for 50 minutes")
    back_at = last + 11 * FIVE_MIN
    deliver(client, "web-1", back_at)
    with time_machine.travel(back_at + timedelta(seconds=30), tick=False), sync_queue():
        assert hosts_watch_task() == "late: none; back: web-1"
    assert kinds(hook) == ["host.late", "host.back"] and hook.bodies()[-1]["summary"] == "web-1 is reporting again"
    assert list(AuditEvent.objects.filter(resource_type="host").order_by("id").values_list("action", flat=True)) == [
        "host.late", "host.back"]


def test_a_one_shot_tool_seen_only_by_its_start_is_news_too(model, hook, sync_queue):
    from tests.axon.test_events_scoring import DUMPER, send, start

    with sync_queue():
        (result,) = send(agent("build-01"), start(DUMPER, pid=7001, seconds_ago=120))
    assert result["anomalies"]
    (new,) = hook.bodies()
    assert new["kind"] == "alert.new" and new["process"]["name"] == "dumper"
    assert new["details"]["key"] == result["anomalies"][0]["key"]


def test_a_flood_is_told_once_as_one_message_not_one_per_name(model, settings, hook, sync_queue):
    settings.HOST_NEW_PROGRAMS_BUDGET = 20
    with sync_queue():
        post(agent("pg-main"), snapshot("pg-main", [
            {"name": f"burst{i}", "exe": f"/usr/local/bin/burst{i}", "username": "postgres"} for i in range(30)],
            seconds_ago=400))
    assert kinds(hook) == ["host.flood"]
    (told,) = hook.bodies()
    assert told["host"] == {"name": "pg-main"} and told["event"] == {"severity": "high"}
    assert told["summary"].startswith("pg-main: 30 new programs") and "30 of them new in its latest snapshot" in told["summary"]
    assert told["url"].endswith("/alerts/?hostname=pg-main&status=all")
