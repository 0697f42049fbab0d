import base64

import pytest

from telemetry.models import Endpoint, ProcessRecord, ProcessRollup, Snapshot
from tests.payloads import legacy, rich

URL = "/api/telemetry/snapshots/"


@pytest.mark.django_db
def test_rich_snapshot_is_stored_with_normalized_keys_and_parents(agent_client):
    payload = rich("web-a", processes=[
        {"name": "systemd", "pid": 1, "ppid": 0, "exe": "/usr/lib/systemd/systemd", "username": "root"},
        {"name": "postgres: checkpointer", "pid": 50, "ppid": 1, "exe": "/usr/lib/postgresql/16/bin/postgres",
         "username": "postgres", "cpu_percent": 1.5, "memory_rss": 1048576},
        {"name": "kworker/0:1-events", "pid": 51, "ppid": 2},
    ])
    response = agent_client.post(URL, payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["hostname"] == "web-a" and body["processes"] == 3
    assert body["model_version"] is None and body["anomalies"] == []
    snapshot = Snapshot.objects.get(pk=body["snapshot_id"])
    assert snapshot.process_count == 3 and snapshot.model_number is None
    rows = list(ProcessRecord.objects.filter(snapshot=snapshot).order_by("index"))
    assert [r.name_norm for r in rows] == ["systemd", "postgres", "kworker"]
    assert [r.parent_name for r in rows] == ["", "systemd", ""]
    assert rows[1].exe_norm == "/usr/lib/postgresql/<v>/bin/postgres"
    assert rows[1].memory_rss == 1048576 and rows[1].cpu_percent == 1.5
    assert Endpoint.objects.get(hostname="web-a").os == "linux"


@pytest.mark.django_db
def test_every_character_a_process_may_carry_is_stored_as_sent(agent_client):
    # PostgreSQL takes records with COPY, whose text format gives tabs, newlines and backslashes meaning.
    odd = "C:\\Temp\\a b\tc\nd\re \\N \\. \"q\" 'q' é 漢 🚀"
    payload = rich("odd-host", processes=[
        {"name": odd, "pid": 7, "ppid": 0, "exe": odd, "username": "\\N", "cmdline": odd + "\n--flag\\"},
        {"name": "x", "pid": None, "ppid": None, "exe": "", "username": "", "cmdline": ""},
    ])
    response = agent_client.post(URL, payload, format="json")
    assert response.status_code == 201, response.content
    first, second = ProcessRecord.objects.filter(snapshot_id=response.json()["snapshot_id"]).order_by("index")
    assert (first.name, first.exe, first.username, first.cmdline) == (odd, odd, "\\N", odd + "\n--flag\\")
    assert (second.name, second.pid, second.ppid, second.exe, second.cmdline) == ("x", None, None, "", "")
    assert first.reasons == [] and first.flagged is None
    # The rollups training reads hold the same strings (they are COPY'd too).
    rollup = ProcessRollup.objects.get(name_norm=first.name_norm)
    assert (rollup.exe_norm, rollup.parent_name, rollup.username, rollup.args_norm, rollup.n) == (
        first.exe_norm, first.parent_name, "\\N", first.args_norm, 1)


@pytest.mark.django_db
def test_legacy_payload_keeps_duplicates_on_both_paths(agent_client):
    for path in (URL, "/ingest/process-snapshot"):
        payload = legacy("kali", minutes_ago=5 if path == URL else 1)
        response = agent_client.post(path, payload, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["processes"] == 3
    assert ProcessRecord.objects.filter(name="bash").count() == 4


@pytest.mark.django_db
def test_same_host_and_time_again_returns_the_stored_snapshot(agent_client):
    payload = rich("host-a")
    first = agent_client.post(URL, payload, format="json")
    second = agent_client.post(URL, payload, format="json")
    assert first.status_code == 201 and second.status_code == 200
    assert second.json() == first.json()
    assert Snapshot.objects.count() == 1 and ProcessRecord.objects.count() == 3


@pytest.mark.django_db
def test_equal_instants_in_other_offsets_are_the_same_snapshot(agent_client):
    payload = rich("host-a")
    payload["timestamp"] = "2026-01-05T10:00:00Z"
    assert agent_client.post(URL, payload, format="json").status_code == 201
    payload["timestamp"] = "2026-01-05T11:00:00+01:00"
    assert agent_client.post(URL, payload, format="json").status_code == 200
    assert Snapshot.objects.count() == 1


@pytest.mark.django_db
def test_batch_items_stand_or_fall_alone(agent_client):
    good, bad, repeat = rich("h1", minutes_ago=3), {"hostname": "h2", "processes": ["x"]}, rich("h1", minutes_ago=3)
    response = agent_client.post(URL + "batch/", [good, bad, repeat], format="json")
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert results[0]["processes"] == 3
    assert "timestamp" in results[1]["error"]["errors"]
    assert results[2]["snapshot_id"] == results[0]["snapshot_id"]
    assert Snapshot.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("body, message", [
    ([], "empty"), ([rich()] * 101, "at most 100"), ({"hostname": "x"}, "array"),
])
def test_batch_must_be_a_list_of_at_most_100(agent_client, body, message):
    response = agent_client.post(URL + "batch/", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_no_credentials_is_401_with_the_contract_body(anon_client):
    response = anon_client.post(URL, rich(), format="json")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_wrong_or_revoked_key_is_401(agent_client, agent_key, anon_client):
    from telemetry.models import AgentKey

    anon_client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert anon_client.post(URL, rich(), format="json").status_code == 401
    AgentKey.objects.update(revoked=True)
    response = agent_client.post(URL, rich(), format="json")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", ["Api-Key a\x00b.c", "Basic " + base64.b64encode(b"agent:a\x00b.c").decode()],
                         ids=["api-key", "basic"])
def test_a_key_with_a_nul_is_401_not_a_database_error(anon_client, authorization):
    anon_client.raise_request_exception = False
    anon_client.credentials(HTTP_AUTHORIZATION=authorization)
    response = anon_client.post(URL, rich(), format="json")
    assert response.status_code == 401, response.content
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_a_user_token_cannot_ingest(admin_client):
    response = admin_client.post(URL, rich(), format="json")
    assert response.status_code == 403
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_agent_key_cannot_read_telemetry(agent_client):
    assert agent_client.get("/api/telemetry/summary/").status_code == 403


@pytest.mark.django_db
def test_the_same_snapshot_twice_in_one_batch_is_stored_once(agent_client):
    payload = rich("twice")
    results = agent_client.post(URL + "batch/", [payload, payload], format="json").json()["results"]
    assert results[0]["snapshot_id"] == results[1]["snapshot_id"]
    assert Snapshot.objects.count() == 1 and ProcessRecord.objects.count() == 3
