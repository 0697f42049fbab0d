import pytest

from telemetry.models import ProcessRecord
from tests.payloads import rich


@pytest.fixture
def stored(agent_client):
    for i, host in enumerate(["h1", "h2", "h1"]):
        response = agent_client.post("/api/telemetry/snapshots/", rich(host, minutes_ago=10 * (i + 1)), format="json")
        assert response.status_code == 201


@pytest.mark.django_db
def test_summary_counts_what_was_stored(stored, analyst_client):
    response = analyst_client.get("/api/telemetry/summary/")
    assert response.status_code == 200
    body = response.json()
    assert body["total_records"] == 9
    assert body["unique_processes"] == 3
    assert body["unique_hosts"] == 2
    assert body["hours_collected"] == pytest.approx(20 / 60, abs=0.05)
    assert body["collection_rate_per_hour"] == 9
    assert [s["hostname"] for s in body["recent_snapshots"]] == ["h1", "h2", "h1"]
    assert body["recent_snapshots"][0]["timestamp"] > body["recent_snapshots"][1]["timestamp"]
    assert body["open_anomalies"] == 0


@pytest.mark.django_db
def test_anomalies_newest_first_filtered_and_paginated(stored, analyst_client):
    ProcessRecord.objects.filter(name="bash").update(flagged=True, status="open", score=0.8, reasons=["never seen on this host"])
    first = analyst_client.get("/api/telemetry/anomalies/?limit=2")
    assert first.status_code == 200
    body = first.json()
    assert len(body["results"]) == 2 and body["next"]
    assert body["results"][0]["timestamp"] >= body["results"][1]["timestamp"]
    fields = {"id", "hostname", "timestamp", "name", "exe", "score", "reasons", "model_version", "status"}
    assert set(body["results"][0]) >= fields
    rest = analyst_client.get(body["next"])
    assert len(rest.json()["results"]) == 1 and rest.json()["next"] is None
    only_h2 = analyst_client.get("/api/telemetry/anomalies/?hostname=h2").json()["results"]
    assert [r["hostname"] for r in only_h2] == ["h2"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["since=notatime", "limit=0", "limit=x", "limit=100000", "status=bogus"])
def test_bad_query_parameters_are_400_with_a_sentence(analyst_client, query):
    response = analyst_client.get(f"/api/telemetry/anomalies/?{query}")
    assert response.status_code == 400
    assert response.json()["detail"].endswith(".")


@pytest.mark.django_db
def test_a_user_without_a_role_is_403(nobody):
    from tests.conftest import client_for

    assert client_for(nobody).get("/api/telemetry/summary/").status_code == 403


@pytest.mark.django_db
def test_records_per_hour_go_by_when_records_were_taken_not_when_they_arrived(stored, agent_client, analyst_client):
    """A backlog (or the demo, loaded at once) delivered now is history, not this hour's rate."""
    backlog = rich("h2", minutes_ago=180)
    assert agent_client.post("/api/telemetry/snapshots/", backlog, format="json").status_code == 201
    body = analyst_client.get("/api/telemetry/summary/").json()
    assert body["total_records"] == 12 and body["collection_rate_per_hour"] == 9
