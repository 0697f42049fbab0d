"""Oversized bodies at the doors that need no authentication are refused before they are parsed.

The log-in and token endpoints take a few hundred bytes; anything above AUTH_MAX_BODY_BYTES is a
413 with a sentence, judged from Content-Length before a byte is read. Ingestion (authenticated
first) keeps the large DATA_UPLOAD_MAX_MEMORY_SIZE its batches need.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests import payloads

AUTH_JSON = ["/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"]
FORMS = ["/login/", "/admin/login/"]


def big_json_array(size: int) -> bytes:
    return json.dumps(["x" * 64] * (size // 68 + 1)).encode()


@pytest.mark.django_db
@pytest.mark.parametrize("path", AUTH_JSON)
def test_an_oversized_json_body_at_an_auth_endpoint_is_413_with_a_sentence(path, settings):
    body = big_json_array(settings.AUTH_MAX_BODY_BYTES + 1)
    response = Client().post(path, body, content_type="application/json")
    assert response.status_code == 413, (response.status_code, response.content[:200])
    assert response["Content-Type"] == "application/json"
    assert "at most" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", FORMS)
def test_an_oversized_login_form_is_413(path, settings, analyst):
    response = Client().post(path, {"username": "ann", "password": "x" * (settings.AUTH_MAX_BODY_BYTES + 1)})
    assert response.status_code == 413
    assert "too large" in response.content.decode()
    assert "_auth_user_id" not in Client().session


@pytest.mark.django_db
def test_a_body_longer_than_its_content_length_is_judged_by_what_is_read(settings, analyst):
    """A Content-Length under the limit does not let more through: the body is cut at what it announced."""
    client = APIClient()
    client.raise_request_exception = False
    good = json.dumps({"username": "ann", "password": "correct-horse-battery"}).encode()
    response = client.generic("POST", "/api/auth/token/", good + b" " * (settings.AUTH_MAX_BODY_BYTES * 4),
                              content_type="application/json", CONTENT_LENGTH=str(len(good)))
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_content_length_that_lies_high_is_refused_before_reading(settings):
    response = APIClient().generic("POST", "/api/auth/token/refresh/", b"{}", content_type="application/json",
                                   CONTENT_LENGTH=str(64 * 1024 * 1024))
    assert response.status_code == 413


@pytest.mark.django_db
def test_a_body_at_the_limit_is_still_read(settings, analyst):
    """The control: a padded but well-formed login just under the limit works."""
    login = {"username": "ann", "password": "correct-horse-battery"}
    pad = settings.AUTH_MAX_BODY_BYTES - len(json.dumps({**login, "pad": ""}))
    body = json.dumps({**login, "pad": "p" * pad}).encode()
    assert len(body) == settings.AUTH_MAX_BODY_BYTES
    response = Client().post("/api/auth/token/", body, content_type="application/json")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_ingestion_still_takes_large_batches(agent_client, settings):
    """What an agent sends in one batch is far above the auth limit and within the general one."""
    processes = [{"name": f"worker-{n}", "pid": 1000 + n, "ppid": 1, "exe": f"/opt/app/bin/worker-{n}",
                  "username": "svc", "cmdline": f"/opt/app/bin/worker-{n} --serve", "cpu_percent": 0.5,
                  "memory_rss": 40_000_000} for n in range(300)]
    batch = [payloads.rich(hostname="test-agent", minutes_ago=i, processes=processes) for i in range(10)]
    size = len(json.dumps(batch))
    assert settings.AUTH_MAX_BODY_BYTES * 50 < size < settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = agent_client.post("/api/telemetry/snapshots/batch/", batch, format="json")
    assert response.status_code == 201, response.content[:300]
    assert all("snapshot_id" in r for r in response.json()["results"])


@pytest.mark.django_db
def test_refresh_is_rate_limited_per_address(settings, analyst):
    settings.AUTH_ADDRESS_RATE = "3/d"
    refresh = str(RefreshToken.for_user(analyst))
    client = APIClient()
    codes = [client.post("/api/auth/token/refresh/", {"refresh": refresh}, format="json").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.post("/api/auth/token/refresh/", {"refresh": "garbage"}, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert "Try again" in response.json()["detail"]
    # Another address is not affected.
    other = client.post("/api/auth/token/refresh/", {"refresh": refresh}, format="json", REMOTE_ADDR="198.51.100.3")
    assert other.status_code == 200
