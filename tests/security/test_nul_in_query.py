"""A NUL character in a query parameter or a path is refused with a 400 before any view sees it.

PostgreSQL text cannot hold NUL: a filter, a search or a lookup that carried one reached the
database and failed there (a 500 on PostgreSQL, a silent miss on SQLite).
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from telemetry.models import AgentKey


def session(user) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    client.force_login(user)
    return client


@pytest.fixture
def analyst_session(analyst) -> APIClient:
    return session(analyst)


@pytest.fixture
def admin_session(admin_user) -> APIClient:
    """A security admin: the retrain preview and the retrain are theirs."""
    return session(admin_user)


@pytest.fixture
def root_session(db) -> APIClient:
    return session(User.objects.create_superuser("root", "root@voltaxe.test", "pw"))


@pytest.mark.django_db
@pytest.mark.parametrize("url,name", [
    ("/api/axon/alerts/", "hostname"),
    ("/api/axon/alerts/", "status"),
    ("/api/axon/retrain/preview/", "exclude"),
    ("/api/telemetry/anomalies/", "hostname"),
    ("/api/axon/runs/", "limit"),
])
def test_a_nul_in_an_api_query_parameter_is_400_naming_it(admin_session, url, name):
    response = admin_session.get(url, {name: "a\x00b"})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["detail"] == f"{name} contains a NUL character, which no query parameter may hold; remove it."
    assert response.json()["errors"] == {name: ["must not contain a NUL character"]}


@pytest.mark.django_db
def test_the_same_filter_without_the_nul_is_answered(analyst_session):
    response = analyst_session.get("/api/axon/alerts/", {"hostname": "ab"})
    assert response.status_code == 200, response.content[:300]


@pytest.mark.django_db
def test_a_nul_in_a_parameter_name_is_refused_too(analyst_session):
    response = analyst_session.get("/api/axon/alerts/?host%00name=a")
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/axon/alerts/a%00b/", "/api/telemetry/hosts/ws%0006/", "/api/axon/runs/%00/"])
def test_a_nul_in_an_api_path_is_400(analyst_session, url):
    """Path segments become lookups (an alert's key, a hostname): refused like a parameter."""
    response = analyst_session.get(url)
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json() == {"detail": "The path contains a NUL character, which is not allowed; remove it."}


@pytest.mark.django_db
def test_an_escaped_percent_is_not_a_nul(analyst_session):
    """%2500 is the text "%00": a literal filter value, not a NUL."""
    assert analyst_session.get("/api/axon/alerts/?hostname=%2500").status_code == 200


@pytest.mark.django_db
def test_a_page_gets_a_plain_400_naming_the_parameter(analyst_session):
    response = analyst_session.get("/live-telemetry/", {"q": "a\x00b"}, HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"q contains a NUL character" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "/admin/axon/alert/?q=a%00b",                       # the search box
    "/admin/telemetry/agenthost/?q=ws%00",
    "/admin/telemetry/endpoint/?hostname=a%00b",        # a field lookup in the changelist
    "/admin/telemetry/agentkey/a%00b/change/",          # a text primary key in the path
])
def test_the_admin_refuses_a_nul_in_a_search_a_filter_or_a_path(root_session, url):
    AgentKey.objects.create_key(name="k")
    response = root_session.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert b"NUL character" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    {"keys": ["k"], "status": "closed", "note": "a\x00b"},
    {"keys": ["a\x00b"], "status": "closed"},
])
def test_a_nul_in_a_triage_body_is_400_with_a_sentence(analyst_session, body):
    response = analyst_session.post("/api/axon/alerts/triage/", body, format="json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["detail"]


@pytest.mark.django_db
def test_a_nul_in_a_retrain_reason_is_400_with_a_sentence(admin_session):
    response = admin_session.post("/api/axon/retrain", {"reason": "a\x00b"}, format="json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["detail"]
