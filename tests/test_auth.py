import pytest
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_token_pair_then_refresh_then_bearer_reads(analyst):
    client = APIClient()
    response = client.post("/api/auth/token/", {"username": "ann", "password": "correct-horse-battery"}, format="json")
    assert response.status_code == 200
    tokens = response.json()
    refreshed = client.post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200 and "access" in refreshed.json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert client.get("/api/telemetry/summary/").status_code == 200


@pytest.mark.django_db
def test_bad_credentials_are_401(analyst):
    response = APIClient().post("/api/auth/token/", {"username": "ann", "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"]


@pytest.mark.django_db
def test_forged_and_garbage_bearer_tokens_are_401(analyst):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert client.get("/api/telemetry/summary/").status_code == 401
    import jwt

    claims = {"user_id": analyst.pk, "token_type": "access", "exp": 4102444800, "jti": "x"}
    forged = jwt.encode(claims, "a-guessed-secret-that-is-long-enough-0123456789", algorithm="HS256")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get("/api/telemetry/summary/").status_code == 401


@pytest.mark.django_db
def test_password_guessing_is_rate_limited_per_user_name_and_address(settings, analyst):
    settings.TOKEN_RATE = "3/d"  # a day: no window edge inside the test
    client = APIClient()
    codes = [client.post("/api/auth/token/", {"username": "ann", "password": f"guess{i}"}, format="json").status_code
             for i in range(4)]
    assert codes == [401, 401, 401, 429]
    response = client.post("/api/auth/token/", {"username": "ann", "password": "correct-horse-battery"}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Try again" in response.json()["detail"]


@pytest.mark.django_db
def test_unauthenticated_reads_are_401_with_the_contract_body(anon_client):
    for url in ("/api/telemetry/summary/", "/api/telemetry/anomalies/", "/api/audit/events/"):
        response = anon_client.get(url)
        assert response.status_code == 401, url
        assert response.json() == {"detail": "Not authenticated"}
