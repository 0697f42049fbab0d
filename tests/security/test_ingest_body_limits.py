"""Every agent door has a body limit, judged before the body is parsed: a 413 with a sentence, nothing stored.

Parsed JSON takes up to ~25 times its size in a worker, and an agent key is easy to come by for
whoever holds one machine, so INGEST_MAX_BODY_BYTES (one snapshot, the Sentinel's other reports)
and INGEST_BATCH_MAX_BODY_BYTES (a batch) bound what one request can cost; MAX_BODY_BYTES bounds
every other route. The limits are lowered here so that the bodies stay cheap to build.
"""
from __future__ import annotations

import http.client
import io
import json

import pytest

from axon.models import TrainingRun
from telemetry.models import Endpoint, ProcessRecord, Snapshot
from tests import payloads
from tests.harness import Gunicorn

HOST = "test-agent"  # the agent_key fixture's host
SNAPSHOT_LIMIT = 64 * 1024
BATCH_LIMIT = 128 * 1024
SNAPSHOT_DOORS = ["/api/telemetry/snapshots/", "/ingest/process-snapshot"]
# The Sentinel's other reports share the single snapshot's limit; all but the host report are answered unread.
REPORT_DOORS = ["/ingest/snapshot", "/ingest/network-snapshot", "/ingest/suspicious_event", "/ingest/rootkit_event",
                "/ingest/vulnerability_event"]


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.INGEST_MAX_BODY_BYTES = SNAPSHOT_LIMIT
    settings.INGEST_BATCH_MAX_BODY_BYTES = BATCH_LIMIT


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def padded(make, size: int) -> bytes:
    """encode(make(processes)) of exactly `size` bytes: valid processes whose command lines carry the padding."""
    count = size // 30_000 + 1
    procs = [{"name": f"worker-{i}", "pid": 100 + i, "ppid": 1, "exe": f"/opt/app/worker-{i}", "cmdline": ""}
             for i in range(count)]
    need = size - len(encode(make(procs)))
    assert need >= 0, "the padding cannot be negative"
    for proc in procs:
        proc["cmdline"], need = "x" * min(need, 30_000), need - min(need, 30_000)
    body = encode(make(procs))
    assert len(body) == size
    return body


def snapshot(size: int, minutes_ago: float = 0) -> bytes:
    return padded(lambda procs: payloads.rich(hostname=HOST, minutes_ago=minutes_ago, processes=procs), size)


def batch(size: int) -> bytes:
    return padded(lambda procs: [payloads.rich(hostname=HOST, minutes_ago=5), payloads.rich(hostname=HOST, processes=procs)],
                  size)


def host_report(size: int) -> bytes:
    return padded(lambda procs: {"hostname": HOST, "os": "Linux", "processes": procs}, size)


def assert_413(response, limit: int, advice: str) -> None:
    assert response.status_code == 413, (response.status_code, response.content[:200])
    assert response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert f"at most {limit} bytes" in detail and advice in detail, detail


def assert_nothing_stored() -> None:
    assert (Snapshot.objects.count(), ProcessRecord.objects.count(), Endpoint.objects.count()) == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("path", SNAPSHOT_DOORS)
def test_an_oversized_snapshot_is_413_with_a_sentence_and_nothing_is_stored(agent_client, path):
    response = agent_client.generic("POST", path, snapshot(SNAPSHOT_LIMIT + 1), content_type="application/json")
    assert_413(response, SNAPSHOT_LIMIT, "Send fewer processes")
    assert_nothing_stored()


@pytest.mark.django_db
def test_an_oversized_batch_is_413_and_tells_to_split_it(agent_client):
    response = agent_client.generic("POST", "/api/telemetry/snapshots/batch/", batch(BATCH_LIMIT + 1),
                                    content_type="application/json")
    assert_413(response, BATCH_LIMIT, "Split the batch")
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/telemetry/events/", "/api/telemetry/events/sysmon/", "/api/telemetry/events/ecs/"])
def test_the_events_doors_take_a_batch_and_not_a_byte_more(agent_client, path):
    """1,000 starts with their command lines: the batch limit, the same for the API's, Sysmon's and ECS's records."""
    start = {"hostname": HOST, "timestamp": payloads.ts(1), "name": "whoami", "pid": 1, "cmdline": ""}
    body = encode([start])
    start["cmdline"] = "x" * (BATCH_LIMIT + 1 - len(body))
    response = agent_client.generic("POST", path, encode([start]), content_type="application/json")
    assert_413(response, BATCH_LIMIT, "Send fewer events")
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("path", REPORT_DOORS)
def test_an_oversized_sentinel_report_is_413_and_nothing_is_stored(agent_client, path):
    response = agent_client.generic("POST", path, host_report(SNAPSHOT_LIMIT + 1), content_type="application/json")
    assert_413(response, SNAPSHOT_LIMIT, "nothing was stored")
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "build", "limit"), [
    ("/api/telemetry/snapshots/", snapshot, SNAPSHOT_LIMIT),
    ("/ingest/process-snapshot", snapshot, SNAPSHOT_LIMIT),
    ("/api/telemetry/snapshots/batch/", batch, BATCH_LIMIT),
])
def test_a_body_at_the_limit_is_stored_and_one_byte_more_is_not(agent_client, path, build, limit):
    over = agent_client.generic("POST", path, build(limit + 1), content_type="application/json")
    assert over.status_code == 413
    assert_nothing_stored()
    at = agent_client.generic("POST", path, build(limit), content_type="application/json")
    assert at.status_code == 201, at.content[:300]
    assert Snapshot.objects.count() == (2 if path.endswith("batch/") else 1)


@pytest.mark.django_db
def test_every_other_route_has_the_small_default_limit(admin_client, settings):
    settings.MAX_BODY_BYTES = 4096
    response = admin_client.post("/api/axon/retrain", {"reason": "r" * 4096}, format="json")
    assert_413(response, 4096, "Send a smaller request")
    assert TrainingRun.objects.count() == 0


class Input(io.BytesIO):
    """wsgi.input that counts what the server read of it."""

    def read(self, size=-1):
        data = super().read(size)
        self.taken = getattr(self, "taken", 0) + len(data)
        return data


def chunked(client, path: str, body: bytes):
    """As gunicorn hands over a chunked request: no Content-Length, a stream that ends at the last chunk."""
    stream = Input(body)
    response = client.generic("POST", path, b"", content_type="application/json", CONTENT_LENGTH="",
                              HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": stream, "wsgi.input_terminated": True})
    return response, stream


@pytest.mark.django_db
def test_a_chunked_body_over_the_limit_is_413_after_reading_one_byte_more_than_the_limit(agent_client):
    response, stream = chunked(agent_client, "/api/telemetry/snapshots/", snapshot(SNAPSHOT_LIMIT * 4))
    assert_413(response, SNAPSHOT_LIMIT, "Send fewer processes")
    assert stream.taken == SNAPSHOT_LIMIT + 1
    assert_nothing_stored()


@pytest.mark.django_db
def test_a_chunked_snapshot_within_the_limit_is_read_and_stored(agent_client):
    response, _ = chunked(agent_client, "/api/telemetry/snapshots/", snapshot(SNAPSHOT_LIMIT))
    assert response.status_code == 201, response.content[:300]
    assert Snapshot.objects.count() == 1


@pytest.mark.django_db
def test_a_content_length_that_lies_high_is_refused_before_reading(agent_client):
    stream = Input(snapshot(1000))
    response = agent_client.generic("POST", "/api/telemetry/snapshots/batch/", b"", content_type="application/json",
                                    CONTENT_LENGTH=str(64 * 1024 * 1024), **{"wsgi.input": stream})
    assert_413(response, BATCH_LIMIT, "Split the batch")
    assert getattr(stream, "taken", 0) == 0
    assert_nothing_stored()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_announced_and_chunked_bodies_are_bounded(agent_key, subprocess_env):
    env = {**subprocess_env, "INGEST_MAX_BODY_BYTES": str(SNAPSHOT_LIMIT)}
    headers = {"Authorization": f"Api-Key {agent_key}", "Content-Type": "application/json"}

    def post(body: bytes, *, chunk: bool) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            if chunk:  # http.client sends an iterable body as chunks, without a Content-Length
                conn.request("POST", "/ingest/process-snapshot", iter([body[:10_000], body[10_000:]]), headers,
                             encode_chunked=True)
            else:
                conn.request("POST", "/ingest/process-snapshot", body, headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    with Gunicorn(env, workers=1) as server:
        status, body = post(snapshot(SNAPSHOT_LIMIT + 1, minutes_ago=1), chunk=False)
        assert status == 413 and f"at most {SNAPSHOT_LIMIT} bytes" in body["detail"], (status, body)
        status, body = post(snapshot(SNAPSHOT_LIMIT * 3, minutes_ago=2), chunk=True)
        assert status == 413 and f"at most {SNAPSHOT_LIMIT} bytes" in body["detail"], (status, body)
        assert Snapshot.objects.count() == 0
        status, body = post(snapshot(SNAPSHOT_LIMIT, minutes_ago=3), chunk=True)
        assert status == 201, body
    assert Snapshot.objects.count() == 1
