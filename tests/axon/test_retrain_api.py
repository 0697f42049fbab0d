"""POST /api/axon/retrain: the panic button's contract."""
import pytest
from django_q.models import OrmQ
from rest_framework.test import APIClient

from audit.models import AuditEvent
from axon.models import TrainingRun
from tests.conftest import client_for

URL = "/api/axon/retrain"


def actions(run_id=None) -> list[str]:
    qs = AuditEvent.objects.filter(action__startswith="retrain.")
    if run_id is not None:
        qs = qs.filter(resource_id=str(run_id))
    return list(qs.order_by("id").values_list("action", flat=True))


@pytest.mark.django_db(transaction=True)
def test_press_queues_a_run_and_answers_with_the_contract_body(admin_client):
    response = admin_client.post(URL, {"reason": "installed an editor", "exclude": ["miner"]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "training_started"
    assert body["message"].startswith("ML model retraining initiated. This will take about ")
    assert body["estimated_completion"].startswith("about ")
    assert body["triggered_by"] == "sam@voltaxe.test"
    assert body["note"].startswith("The model will be updated automatically")
    assert body["timestamp"].endswith("+00:00")
    run = TrainingRun.objects.get(pk=body["run_id"])
    assert body["status_url"] == f"/api/axon/runs/{run.pk}/"
    assert (run.status, run.trigger, run.reason, run.exclude) == ("queued", "api", "installed an editor", ["miner"])
    assert OrmQ.objects.count() == 1  # really on the queue
    assert actions(run.pk) == ["retrain.started"]
    event = AuditEvent.objects.get(action="retrain.started")
    assert event.details["exclude"] == ["miner"] and event.ip_address == "127.0.0.1"


@pytest.mark.django_db
def test_trailing_slash_and_empty_body_work(admin_client):
    response = admin_client.post(URL + "/")
    assert response.status_code == 200 and response.json()["status"] == "training_started"


@pytest.mark.django_db
def test_second_press_joins_the_running_run(admin_client, other_admin):
    first = admin_client.post(URL).json()
    second = client_for(other_admin).post(URL)
    assert second.status_code == 200
    assert second.json()["status"] == "already_running" and second.json()["run_id"] == first["run_id"]
    assert TrainingRun.objects.count() == 1
    assert actions(first["run_id"]) == ["retrain.started", "retrain.joined"]


@pytest.mark.django_db
def test_same_user_again_within_five_minutes_is_429_while_another_admin_may_press(admin_client, other_admin):
    assert admin_client.post(URL).status_code == 200
    TrainingRun.objects.update(status="succeeded")  # the first run is over; the limit still holds
    again = admin_client.post(URL)
    assert again.status_code == 429
    assert int(again["Retry-After"]) > 0 and again.json()["retry_after"] == int(again["Retry-After"])
    assert "Try again in" in again.json()["detail"]
    other = client_for(other_admin).post(URL)
    assert other.status_code == 200 and other.json()["status"] == "training_started"
    assert "retrain.rate_limited" in actions()


@pytest.mark.django_db
def test_global_limit_applies_to_everyone(settings, admin_user, other_admin, db):
    from tests.conftest import _user

    settings.RETRAIN_GLOBAL_RATE = "2/h"
    third = _user("sol", "Security Admin")
    codes = []
    for user in (admin_user, other_admin, third):
        codes.append(client_for(user).post(URL).status_code)
        TrainingRun.objects.update(status="succeeded")
    assert codes == [200, 200, 429]


@pytest.mark.django_db
def test_analyst_gets_403_and_an_audit_event(analyst_client):
    response = analyst_client.post(URL)
    assert response.status_code == 403
    assert "security admins" in response.json()["detail"]
    assert TrainingRun.objects.count() == 0
    event = AuditEvent.objects.get(action="retrain.denied")
    assert event.actor_name == "ann@voltaxe.test" and event.outcome == "denied"


@pytest.mark.django_db
def test_anonymous_gets_401(anon_client):
    response = anon_client.post(URL)
    assert response.status_code == 401 and response.json() == {"detail": "Not authenticated"}
    assert TrainingRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"reason": 5}, "reason"), ({"exclude": "xmrig"}, "exclude"), ({"exclude": [1]}, "exclude"),
    ({"exclude": [""]}, "exclude"), ({"reason": "x" * 1001}, "reason"), (["xmrig"], "non_field_errors"),
])
def test_bad_body_is_400_and_starts_nothing(admin_client, body, field):
    response = admin_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"] and "Nothing was started" in response.json()["detail"]
    assert TrainingRun.objects.count() == 0


@pytest.mark.django_db
def test_session_press_needs_csrf_and_counts_as_dashboard(admin_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(URL).status_code == 403
    assert TrainingRun.objects.count() == 0
    client.get("/live-telemetry/")
    token = client.cookies["csrftoken"].value
    response = client.post(URL, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert TrainingRun.objects.get().trigger == "dashboard"


@pytest.mark.django_db
def test_jwt_press_counts_as_api(admin_user):
    client = APIClient()
    login = {"username": "sam", "password": "correct-horse-battery"}
    access = client.post("/api/auth/token/", login, format="json").json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert client.post(URL).status_code == 200
    assert TrainingRun.objects.get().trigger == "api"


@pytest.mark.django_db
def test_runs_and_status_are_readable_by_analysts(admin_client, analyst_client):
    run_id = admin_client.post(URL).json()["run_id"]
    runs = analyst_client.get("/api/axon/runs/").json()["results"]
    assert runs[0]["id"] == run_id and runs[0]["status"] == "queued" and runs[0]["triggered_by"] == "sam@voltaxe.test"
    detail = analyst_client.get(f"/api/axon/runs/{run_id}/").json()
    assert set(detail) >= {"id", "status", "stage", "progress", "trigger", "triggered_by", "reason", "exclude",
                           "created_at", "started_at", "finished_at", "message", "model_version", "log"}
    status = analyst_client.get("/api/axon/status/").json()
    assert status["active_model"] is None and status["current_run"]["id"] == run_id
    assert isinstance(status["worker_alive"], bool)
    assert analyst_client.get("/api/axon/runs/99999/").status_code == 404
    assert analyst_client.post("/api/axon/models/1/activate/").status_code == 403
