"""GET /healthz: what a load balancer and a person read, without logging in."""
import pytest
from django.db import OperationalError, connection

from tests import fleet


@pytest.mark.django_db
def test_healthz_answers_without_auth_and_names_no_model_before_the_first_training(anon_client):
    response = anon_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    # No qcluster runs in this process's test (tests/axon/test_queue.py sees one come up).
    assert body["worker"] in ("ok", "down")
    assert body["active_model"] is None


@pytest.mark.django_db(transaction=True)
def test_healthz_names_the_active_model_version(anon_client):
    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    assert anon_client.get("/healthz").json()["active_model"] == 1


@pytest.mark.django_db
def test_healthz_is_a_503_when_the_database_does_not_answer(anon_client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = anon_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["database"].startswith("error")
