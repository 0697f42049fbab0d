"""Every bad payload is a 400 with a sentence and field errors, and nothing of it is stored."""
import pytest

from telemetry.models import Endpoint, ProcessRecord, Snapshot
from tests.payloads import rich

URL = "/api/telemetry/snapshots/"


def with_process(**fields):
    payload = rich("bad-host")
    payload["processes"][1].update(fields)
    return payload


def without(key):
    payload = rich("bad-host")
    del payload[key]
    return payload


BAD = {
    "not an object": (["a", "b"], "non_field_errors"),
    "missing hostname": (without("hostname"), "hostname"),
    "missing timestamp": (without("timestamp"), "timestamp"),
    "missing processes": (without("processes"), "processes"),
    "empty processes": ({**rich("bad-host"), "processes": []}, "processes"),
    "processes not a list": ({**rich("bad-host"), "processes": "bash"}, "processes"),
    "too many processes": ({**rich("bad-host"), "processes": ["p"] * 5001}, "processes"),
    "hostname not a string": ({**rich("bad-host"), "hostname": 42}, "hostname"),
    "blank hostname": ({**rich("bad-host"), "hostname": "   "}, "hostname"),
    "hostname with NUL": ({**rich("bad-host"), "hostname": "a\x00b"}, "hostname"),
    "very long hostname": ({**rich("bad-host"), "hostname": "h" * 300}, "hostname"),
    "timestamp in 2099": ({**rich("bad-host"), "timestamp": "2099-01-01T00:00:00Z"}, "timestamp"),
    "timestamp not a time": ({**rich("bad-host"), "timestamp": "yesterday"}, "timestamp"),
    "timestamp a number": ({**rich("bad-host"), "timestamp": 1700000000}, "timestamp"),
    "timestamp before 2000": ({**rich("bad-host"), "timestamp": "1970-01-01T00:00:00Z"}, "timestamp"),
    "process without name": (with_process(name=None), "processes[1].name"),
    "process name a number": (with_process(name=7), "processes[1].name"),
    "process name with NUL": (with_process(name="ss\x00hd"), "processes[1].name"),
    "very long process name": (with_process(name="x" * 256), "processes[1].name"),
    "very long cmdline": (with_process(cmdline="x" * 40000), "processes[1].cmdline"),
    "pid a string": (with_process(pid="800"), "processes[1].pid"),
    "pid negative": (with_process(pid=-1), "processes[1].pid"),
    "pid true": (with_process(pid=True), "processes[1].pid"),
    "pid too big": (with_process(pid=2**70), "processes[1].pid"),
    "cpu a string": (with_process(cpu_percent="high"), "processes[1].cpu_percent"),
    "cpu negative": (with_process(cpu_percent=-3), "processes[1].cpu_percent"),
    "memory fractional": (with_process(memory_rss=1.5), "processes[1].memory_rss"),
    "exe a list": (with_process(exe=["/bin/sh"]), "processes[1].exe"),
    "legacy with non-string names": ({**rich("bad-host"), "processes": ["bash", 3, None]}, "processes[1]"),
    "process a list": ({**rich("bad-host"), "processes": [["bash"]]}, "processes[0]"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_payload_is_400_and_stores_nothing(agent_client, case):
    payload, field = BAD[case]
    response = agent_client.post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"]
    assert isinstance(body["detail"], str) and "Nothing of this snapshot was stored" in body["detail"]
    assert Snapshot.objects.count() == 0 and ProcessRecord.objects.count() == 0 and Endpoint.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("raw, content_type", [
    (b"{not json", "application/json"),
    (b'{"hostname": "a", "timestamp": "2026-01-01T00:00:00Z", "processes": ["a"]', "application/json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"NaN", "application/json"),
])
def test_malformed_json_is_400_with_a_sentence(agent_client, raw, content_type):
    response = agent_client.post(URL, raw, content_type=content_type)
    assert response.status_code == 400, response.content
    assert "JSON" in response.json()["detail"] or "errors" in response.json()
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_form_encoded_body_is_refused_with_a_hint(agent_client):
    response = agent_client.post(URL, "hostname=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


@pytest.mark.django_db
def test_nan_cpu_is_refused(agent_client):
    raw = (b'{"hostname": "a", "timestamp": "2026-01-01T00:00:00Z", '
           b'"processes": [{"name": "x", "cpu_percent": NaN}]}')
    response = agent_client.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert Snapshot.objects.count() == 0


@pytest.mark.django_db
def test_batch_of_bad_items_stores_none_of_them(agent_client):
    response = agent_client.post(URL + "batch/", [BAD["pid a string"][0], BAD["timestamp in 2099"][0]], format="json")
    assert response.status_code == 201
    assert all("error" in r for r in response.json()["results"])
    assert Snapshot.objects.count() == 0 and ProcessRecord.objects.count() == 0
