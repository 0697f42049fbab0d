"""The commands as a person runs them: real subprocesses against the test database."""
import pytest

from telemetry.models import AgentKey, ProcessRecord, Snapshot


@pytest.mark.django_db(transaction=True)
def test_create_agent_prints_a_key_once_that_can_ingest(manage, agent_client):
    result = manage("create_agent", "ws-new")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    agent = AgentKey.objects.get(name="ws-new")
    assert key.startswith(agent.prefix + ".")
    assert key not in agent.hashed_key  # only a hash is stored
    agent_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    from tests.payloads import rich

    assert agent_client.post("/api/telemetry/snapshots/", rich("ws-new"), format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_create_agent_without_a_name_fails_with_a_hint(manage):
    result = manage("create_agent", "  ")
    assert result.returncode != 0
    assert "create_agent" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_collect_stores_this_machines_real_processes(manage):
    import psutil

    result = manage("collect", "--hostname", "this-machine")
    assert result.returncode == 0, result.stderr
    snapshot = Snapshot.objects.get(endpoint__hostname="this-machine")
    names = set(ProcessRecord.objects.filter(snapshot=snapshot).values_list("name", flat=True))
    assert snapshot.process_count >= 5
    # The collector itself is one of the processes it saw.
    assert any(n.startswith("python") for n in names)
    assert snapshot.process_count <= len(psutil.pids()) + 50


@pytest.mark.django_db(transaction=True)
def test_collect_against_a_live_server_with_a_key(manage, live_server):
    _, key = AgentKey.objects.create_key(name="collector")
    result = manage("collect", "--server", live_server.url, "--key", key, "--hostname", "via-http",
                    "--every", "0.2", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert Snapshot.objects.filter(endpoint__hostname="via-http").count() == 2


@pytest.mark.django_db(transaction=True)
def test_collect_with_a_bad_key_says_why(manage, live_server):
    result = manage("collect", "--server", live_server.url, "--key", "bad.key")
    assert result.returncode != 0
    assert "401" in result.stderr and "not valid" in result.stderr
