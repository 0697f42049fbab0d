"""Every API error is JSON with a sentence, never a 5xx for bad input, and never an HTML page under /api/."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tests.harness import Gunicorn

SINCE_URLS = ["/api/telemetry/anomalies/", "/api/audit/events/"]


@pytest.fixture
def debug_off(settings):
    settings.DEBUG = False


def bearer(user) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", SINCE_URLS)
@pytest.mark.parametrize("since", [
    "9999-12-31T23:59:59-23:59",   # past year 9999 once in UTC
    "0001-01-01T00:00:00+14:00",   # before year 1 once in UTC
    "2026-11-26T09:00:00+24:00",   # no such offset
    "2026-13-01T00:00:00Z",
    "yesterday",
])
def test_a_since_out_of_range_or_malformed_is_400_with_a_sentence(admin_user, debug_off, url, since):
    response = bearer(admin_user).get(url, {"since": since})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["detail"].startswith("since ") and body["errors"] == {"since": [body["errors"]["since"][0]]}


@pytest.mark.django_db
@pytest.mark.parametrize("url", SINCE_URLS)
@pytest.mark.parametrize("since", ["9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00Z", "2026-11-26T09:00:00 01:00"])
def test_a_since_at_the_edge_of_the_range_is_answered(admin_user, debug_off, url, since):
    """The controls: extreme but representable times (and a '+' decoded to a space) are valid filters."""
    response = bearer(admin_user).get(url, {"since": since})
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert isinstance(response.json()["results"], list)


@pytest.mark.django_db
@pytest.mark.parametrize("url,name", [("/api/telemetry/anomalies/", "hostname"), ("/api/audit/events/", "action"),
                                      ("/api/audit/events/", "resource_id")])
def test_a_text_filter_with_a_nul_is_400_not_a_database_error(admin_user, debug_off, url, name):
    """PostgreSQL refuses NUL in a string: the filter is refused before it reaches the database."""
    response = bearer(admin_user).get(url, {name: "ws\x0006"})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["detail"].startswith(f"{name} ")
    assert bearer(admin_user).get(url, {name: "ws06"}).status_code == 200


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_json_404(admin_user, debug_off):
    for client in (APIClient(), bearer(admin_user)):
        response = client.get("/api/no-such-thing/", HTTP_ACCEPT="text/html,application/xhtml+xml")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["detail"]


@pytest.mark.django_db
def test_an_unknown_page_is_still_an_html_404_for_a_browser(client, debug_off):
    response = client.get("/no-such-page/", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_an_agent_on_an_unknown_path_gets_json(agent_client, debug_off):
    response = agent_client.post("/ingest/no-such-thing", {}, format="json")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.django_db
def test_a_refused_page_answers_a_script_in_json_and_a_browser_in_html(client, nobody, debug_off):
    client.force_login(nobody)
    response = client.get("/live-telemetry/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert response.json() == {"detail": "You need the Analyst or Security Admin role to view telemetry."}
    response = client.get("/live-telemetry/", HTTP_ACCEPT="text/html,*/*")
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_request_for_an_unknown_host_is_a_json_400_under_api(admin_user, debug_off):
    response = bearer(admin_user).get("/api/telemetry/summary/", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The request is malformed")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_a_wrong_method_is_a_json_405(admin_user, debug_off, method):
    response = getattr(bearer(admin_user), method)("/api/telemetry/summary/")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert method.upper() in response.json()["detail"]


@pytest.mark.slow
@pytest.mark.django_db
def test_a_server_error_under_api_is_json_through_a_real_server(subprocess_env):
    """gunicorn, DEBUG off, the product's URLs plus one view that fails: a JSON 500, and an HTML one for a page."""
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "tests.security.failing_settings", "DEBUG": "0"}
    with Gunicorn(env, workers=1) as server:
        code, body = server.request("GET", "/api/fail/")
        assert code == 500
        assert body["detail"].startswith("The server failed")
        code, body = server.request("GET", "/api/no-such-thing/")
        assert code == 404 and body["detail"]
        code, body = server.request("GET", "/fail/", headers={"Accept": "text/html"})
        assert code == 500 and "raw" in body  # a page: not JSON
