"""The Live Telemetry page as the server renders it, and its form posts without JavaScript."""
import pytest

from audit.models import AuditEvent
from axon.models import ModelVersion, TrainingRun
from tests import fleet


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
    for text in ("🚨 Retrain Model", "Panic Button", "When to use this", "Important", "Retrain Now", "Cancel",
                 'name="learn" value="Figma.exe" checked', 'name="learn" value="kdevtmpfsi" checked', "csrfmiddlewaretoken"):
        assert text in html, text
    assert "Model <strong>v1</strong> active" in html


@pytest.mark.django_db
def test_form_post_without_javascript_retrains_with_unticked_names_excluded(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/live-telemetry/retrain/", {
        "offered": ["Figma.exe", "kdevtmpfsi"], "learn": ["Figma.exe"], "reason": "new design tool",
    }, follow=True)
    assert response.redirect_chain[-1][0] == "/live-telemetry/"
    run = TrainingRun.objects.get()
    assert (run.trigger, run.exclude, run.reason) == ("dashboard", ["kdevtmpfsi"], "new design tool")
    assert "ML model retraining initiated" in response.content.decode()
    again = client.post("/live-telemetry/retrain/", {}, follow=True)
    assert "Try again in" in again.content.decode()
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_analyst_form_post_is_refused_and_starts_nothing(client, analyst):
    client.force_login(analyst)
    assert client.post("/live-telemetry/retrain/").status_code == 403
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_live_data_has_what_the_page_polls(client, analyst):
    fleet.history(days=1)
    client.force_login(analyst)
    data = client.get("/live-telemetry/data/").json()
    assert set(data) >= {"summary", "axon", "anomalies", "runs", "versions", "activity", "can_retrain"}
    assert len(data["activity"]) == 24 and sum(h["snapshots"] for h in data["activity"]) > 0
    assert data["can_retrain"] is False


@pytest.mark.django_db
def test_rollback_form_activates_an_older_version(client, admin_user):
    fleet.history(days=2)
    fleet.train()
    fleet.train()
    client.force_login(admin_user)
    response = client.post("/live-telemetry/models/1/activate/", follow=True)
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
