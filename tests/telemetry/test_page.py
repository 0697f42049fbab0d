"""The Live Telemetry page as the server renders it, and its form posts without JavaScript."""
import re

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from axon.models import Approval, ModelVersion, TrainingRun
from axon.services.selection import retrain_preview
from telemetry.views import live_templates
from tests import fleet
from tests.conftest import REPO


@pytest.mark.django_db
def test_root_leads_to_the_page_and_the_page_asks_for_a_login(client):
    assert client.get("/").url == "/live-telemetry/"
    response = client.get("/live-telemetry/")
    assert response.status_code == 302 and response.url.startswith("/login/")


@pytest.mark.django_db
def test_login_form_lets_an_analyst_in(client, analyst):
    response = client.post("/login/", {"username": "ann", "password": "correct-horse-battery"}, follow=True)
    assert response.redirect_chain[-1][0] == "/live-telemetry/"
    assert b"Live Telemetry" in response.content


@pytest.mark.django_db
def test_analyst_sees_the_button_disabled_with_a_reason(client, analyst):
    client.force_login(analyst)
    html = client.get("/live-telemetry/").content.decode()
    assert 'id="panic-button" class="btn-panic" disabled' in html
    assert "Only security admins can retrain the model." in html
    assert 'id="panic-modal"' not in html


@pytest.mark.django_db
def test_a_user_without_a_role_is_refused(client, nobody):
    client.force_login(nobody)
    assert client.get("/live-telemetry/").status_code == 403
    assert client.get("/live-telemetry/data/").status_code == 403


@pytest.mark.django_db
def test_admin_page_has_the_modal_with_its_texts_and_the_preview(client, admin_user):
    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    client.force_login(admin_user)
    html = client.get("/live-telemetry/").content.decode()
    keys = {i["name"]: i["key"] for i in retrain_preview()["will_learn"]}
    for text in ("🚨 Retrain Model", "Panic Button", "When to use this", "Important", "Cancel", "csrfmiddlewaretoken",
                 # the app is ticked; the intruder is offered unticked, with why it is risky
                 f'name="approve" value="{keys["Figma.exe"]}"', f'name="approve" value="{keys["kdevtmpfsi"]}"',
                 "High risk:", "runs from a temporary or world-writable folder (/tmp/kdevtmpfsi)",
                 "Retrain and learn 1 program"):
        assert text in html, text
    checked = re.findall(r'name="approve" value="(\w+)"[^>]*?checked', html)
    assert checked == [keys["Figma.exe"]]
    assert "Model <strong>v1</strong> active" in html


@pytest.mark.django_db
def test_form_post_without_javascript_approves_exactly_the_ticked_keys_not_a_name(client, admin_user):
    """Issue 11, point 3: the same name from two folders on two hosts; unticking one must not approve it."""
    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    public = _figma_from("laptop-raj", "C:\\Users\\Public\\Figma.exe")
    assert "Figma.exe" in {a["name"] for a in fleet.ingest([public])[0]["anomalies"]}
    client.force_login(admin_user)
    html = client.get("/live-telemetry/").content.decode()
    figmas = [i for i in retrain_preview()["will_learn"] if i["name"] == "Figma.exe"]
    assert len(figmas) == 2 and all(f'value="{i["key"]}"' in html for i in figmas)
    ana = next(i for i in figmas if i["hostnames"] == ["laptop-ana"])
    response = client.post("/live-telemetry/retrain/", {"approve": [ana["key"]], "reason": "new design tool"}, follow=True)
    assert response.redirect_chain[-1][0] == "/live-telemetry/"
    run = TrainingRun.objects.get(trigger="dashboard")
    assert run.reason == "new design tool"
    assert [(a["hostname"], a["key"]) for a in run.approved] == [("laptop-ana", ana["key"])]
    assert "ML model retraining initiated" in response.content.decode()
    again = client.post("/live-telemetry/retrain/", {}, follow=True)
    assert "Try again in" in again.content.decode()
    assert TrainingRun.objects.filter(trigger="dashboard").count() == 1


@pytest.mark.django_db
def test_form_post_with_a_nul_in_the_reason_is_refused_politely_and_uses_no_limit(client, admin_user):
    """Issue 9 §3.6: it was a 500 on PostgreSQL, and it used up the user's limit."""
    client.force_login(admin_user)
    response = client.post("/live-telemetry/retrain/", {"reason": "bad\x00reason"}, follow=True)
    assert response.status_code == 200
    assert "Nothing was started." in response.content.decode()
    assert not TrainingRun.objects.exists()
    assert AuditEvent.objects.filter(action="retrain.invalid", outcome="denied").count() == 1
    ok = client.post("/live-telemetry/retrain/", {"reason": "good reason"}, follow=True)
    assert "ML model retraining initiated" in ok.content.decode()
    assert TrainingRun.objects.get().reason == "good reason"


def _figma_from(host, exe):
    from datetime import timedelta

    from django.utils import timezone

    from telemetry.demo import HOSTS

    procs = dict((h, p) for h, _, p in HOSTS)[host]
    pids = {p[0]: 100 + i for i, p in enumerate(procs)}
    processes = [{"name": p[0], "pid": 100 + i, "ppid": pids.get(p[3], 1), "exe": p[1], "username": p[2]}
                 for i, p in enumerate(procs) if p[5] >= 0.5]
    processes.append({"name": "Figma.exe", "pid": 9999, "ppid": pids["explorer.exe"], "exe": exe, "username": "raj"})
    return {"hostname": host, "os": "windows", "timestamp": (timezone.now() - timedelta(seconds=30)).isoformat(),
            "processes": processes}


@pytest.mark.django_db
def test_analyst_form_post_is_refused_starts_nothing_and_is_audited_like_the_api(client, analyst):
    client.force_login(analyst)
    assert client.post("/live-telemetry/retrain/").status_code == 403
    assert not TrainingRun.objects.exists()
    event = AuditEvent.objects.get(action="retrain.denied")
    assert (event.actor_name, event.outcome, event.details["trigger"]) == ("ann@voltaxe.test", "denied", "dashboard")


@pytest.mark.django_db
def test_live_data_has_what_the_page_polls(client, analyst):
    fleet.history(days=1)
    client.force_login(analyst)
    fragments = client.get("/live-telemetry/data/").json()["fragments"]
    assert set(fragments) == set(live_templates())
    hours = [int(n) for n in re.findall(r": (\d+) snapshots</title>", fragments["activity-chart"])]
    assert len(hours) == 24 and sum(hours) > 0
    assert "Only security admins can retrain the model." in fragments["training-banner"]


@pytest.mark.django_db
def test_the_first_render_and_the_poll_render_the_same_fragments(client, admin_user):
    """One renderer: each live part of the page is exactly what the poll brings for the same state."""
    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    fleet.train(user=admin_user)  # an approval, a second version, a run with a user
    run = TrainingRun.objects.create(trigger="api", status="running", stage="training", progress=40)
    client.force_login(admin_user)
    with time_machine.travel(timezone.now(), tick=False):  # "updated at" and "trained … ago" do not move
        page = client.get("/live-telemetry/").content.decode()
        fragments = client.get("/live-telemetry/data/").json()["fragments"]
    page, fragments = unmask(page), {k: unmask(v) for k, v in fragments.items()}
    assert "Activate</button>" in fragments["versions-body"] and "Revoke</button>" in fragments["approvals-body"]
    assert f"Run {run.pk}: training (40%)" in fragments["training-banner"] and "rect" in fragments["activity-chart"]
    for key, html in fragments.items():
        opening = re.search(rf'id="{key}"[^>]*>', page)
        assert opening, key
        assert page[opening.end():].startswith(html + "</"), key


def unmask(html: str) -> str:
    """CSRF tokens are masked afresh on every render."""
    return re.sub(r'name="csrfmiddlewaretoken" value="\w+"', 'name="csrfmiddlewaretoken"', html)


@pytest.mark.parametrize("script", ["static/js/live.js", "axon/static/axon/panel.js"])
def test_the_script_takes_every_address_from_the_page(script):
    text = (REPO / script).read_text()
    assert "/api/" not in text and "/live-telemetry/" not in text


@pytest.mark.django_db
def test_rollback_form_activates_an_older_version(client, admin_user):
    fleet.history(days=2)
    fleet.train()
    fleet.train()
    client.force_login(admin_user)
    # Without the script, the form's first post asks, saying what will change; nothing changes yet.
    ask = client.post("/live-telemetry/models/1/activate/").content.decode()
    assert "Activate model v1?" in ask and "in place of v2." in ask and "past counts on this page change" in ask
    assert ModelVersion.objects.get(is_active=True).version == 2
    response = client.post("/live-telemetry/models/1/activate/", {"confirmed": "yes"}, follow=True)
    assert "Model v1 is now active." in response.content.decode()
    assert ModelVersion.objects.get(is_active=True).version == 1
    assert AuditEvent.objects.filter(action="model.activated", resource_id="1").exists()


@pytest.mark.django_db
def test_login_form_is_rate_limited_per_address(client, analyst, settings):
    settings.TOKEN_RATE = "2/m"
    for _ in range(2):
        assert client.post("/login/", {"username": "ann", "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": "ann", "password": "correct-horse-battery"})
    assert response.status_code == 429 and "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_security_admin_sees_the_approvals_and_revokes_one_from_the_page(client, admin_user, analyst):
    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    fleet.train(user=admin_user)
    approval = Approval.objects.get()
    client.force_login(admin_user)
    html = client.get("/live-telemetry/").content.decode()
    assert "Revoking one takes effect from the\n    next model version" in html and f"/approvals/{approval.pk}/revoke/" in html
    assert 'data-confirm="Revoke? figma.exe on ' in html  # the script's dialog says the same as the page below
    ask = client.post(f"/live-telemetry/approvals/{approval.pk}/revoke/").content.decode()
    assert "Revoke the approval of figma.exe on" in ask and "is flagged again and left out of training" in ask
    assert Approval.objects.exists()
    response = client.post(f"/live-telemetry/approvals/{approval.pk}/revoke/", {"confirmed": "yes"}, follow=True)
    assert "the next model version will not." in response.content.decode()
    assert not Approval.objects.exists()
    assert AuditEvent.objects.get(action="approval.revoked").details["name"] == "figma.exe"
    client.force_login(analyst)
    assert 'id="approvals-title"' not in client.get("/live-telemetry/").content.decode()


@pytest.mark.django_db
def test_the_page_says_which_hosts_send_names_only(client, analyst, agent_client):
    from tests.payloads import legacy, rich

    assert agent_client.post("/ingest/process-snapshot", legacy("test-agent"), format="json").status_code == 201
    client.force_login(analyst)
    page = client.get("/live-telemetry/").content.decode()
    assert page.count(">names only</span>") == 1
    assert agent_client.post("/api/telemetry/snapshots/", rich("test-agent", minutes_ago=1), format="json").status_code == 201
    snapshots = client.get("/live-telemetry/data/").json()["fragments"]["snapshots-body"]
    assert snapshots.count("<tr>") == 2 and ">names only</span>" not in snapshots


@pytest.mark.django_db
def test_the_open_anomalies_card_counts_the_alerts_the_table_lists_and_triage_moves_it(client, admin_user):
    import re

    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    client.force_login(admin_user)

    def card_and_rows():
        html = client.get("/live-telemetry/").content.decode()
        card = re.search(r'Open anomalies</span><span class="value">(\d+)</span>\s*<span class="sub">([\d,]+) observation',
                         html)
        rows = re.findall(r'<tr data-key="([0-9a-f]+)" class="alert-row', html)
        return int(card.group(1)), int(card.group(2).replace(",", "")), rows

    open_, observations, rows = card_and_rows()
    assert open_ == len(rows) >= 2 and observations > open_
    client.post("/live-telemetry/triage/", {"key": rows[0], "status": "acknowledged", "note": "looking"})
    after, _, rows_after = card_and_rows()
    assert after == open_ - 1 and len(rows_after) == len(rows)  # acknowledged: still listed, no longer open


def test_the_chart_draws_snapshots_and_anomalies_on_one_labelled_scale():
    from datetime import UTC, datetime, timedelta

    from telemetry.views import activity_chart

    hour = datetime(2026, 11, 26, tzinfo=UTC)
    activity = [{"hour": hour + timedelta(hours=i), "snapshots": 0, "anomalies": 0, "model": None} for i in range(24)]
    activity[3].update(snapshots=120, anomalies=30, model=4)
    chart = activity_chart(activity)
    assert [t["value"] for t in chart["ticks"]] == [0, 100, 200] and chart["model"] == 4
    bars = chart["hours"][3]
    # One scale: 30 anomalies stand a quarter as tall as 120 snapshots (two scales drew them alike).
    assert bars["anom"]["height"] * 4 == pytest.approx(bars["snap"]["height"], rel=0.01)


@pytest.mark.django_db
def test_an_hours_anomaly_bar_opens_the_alerts_of_that_hour(client, admin_user):
    import html as html_lib
    import re

    split = fleet.history(days=2)
    fleet.train()
    fleet.recent(split)
    client.force_login(admin_user)
    page = client.get("/live-telemetry/").content.decode()
    assert "on one scale. Anomalies as model v1 scores them" in page
    links = re.findall(r'<a href="([^"]+)" class="hour-link">', page)
    assert links and all(link.startswith("/alerts/?status=all&amp;since=") for link in links)
    alerts = client.get(html_lib.unescape(links[-1]))
    assert alerts.status_code == 200 and 'class="alert-row' in alerts.content.decode()
