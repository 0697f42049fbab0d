import pytest


@pytest.mark.django_db
def test_healthz_answers_without_auth(anon_client):
    response = anon_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["worker"] in ("ok", "down")
    assert body["active_model"] is None
