"""Property tests: whatever a client sends, ingestion and the panic button answer 2xx/4xx, never 5xx, and a
refusal stores nothing.

Each example runs inside its own transaction that is rolled back, so it starts from the same empty database.
Validity is judged by an oracle built from API.md (required fields and their types, limits), not by the
product's validator: each mutation is labelled valid / invalid / either ("either": the contract does not
decide, so only "no 5xx, and a consistent database" is asserted).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from audit.models import AuditEvent
from axon.models import TrainingRun
from telemetry.models import Endpoint, ProcessRecord, Snapshot

SNAPSHOT = "/api/telemetry/snapshots/"
BATCH = "/api/telemetry/snapshots/batch/"
RETRAIN = "/api/axon/retrain"
MAX_PROCESSES = 40  # lowered for the test (settings fixture) so "too many processes" is cheap to generate

# Hypothesis' own caches go under the git-ignored .cache/, not a new .hypothesis/ in the checkout.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(str(Path(__file__).resolve().parents[2] / ".cache" / "hypothesis"))

FUZZ = settings(
    max_examples=200, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def rolled_back():
    """One example's world: everything it writes is undone afterwards, and the rate-limit cache is cold."""
    cache.clear()
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def counts() -> tuple[int, int, int]:
    return Snapshot.objects.count(), ProcessRecord.objects.count(), Endpoint.objects.count()


@pytest.fixture
def agent(agent_key, settings) -> APIClient:
    settings.MAX_PROCESSES_PER_SNAPSHOT = MAX_PROCESSES
    client = APIClient()
    client.raise_request_exception = False  # a 500 must come back as a status to assert on
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {agent_key}")
    return client


def post_json(client: APIClient, url: str, value=None, *, raw: str | None = None):
    body = raw if raw is not None else json.dumps(value)
    return client.post(url, data=body.encode("utf-8", "surrogatepass"), content_type="application/json")


def assert_no_server_error(response, sent):
    assert response.status_code < 500, (response.status_code, response.content[:500], repr(sent)[:2000])


def assert_contract_400(response):
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    assert body["detail"].endswith("."), body["detail"]
    assert isinstance(body.get("errors"), dict), body


# --- strategies -------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.sampled_from(["hostname", "timestamp", "os", "processes", "name", "pid"]) | st.text(max_size=8),
                      inner, max_size=5),
    max_leaves=25,
)


def clean_text(min_size: int, max_size: int):
    return st.text(min_size=min_size, max_size=max_size).filter(lambda s: "\x00" not in s and (min_size == 0 or s.strip()))


zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)),
                         timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
past_times = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2025, 6, 1), timezones=zones)


@st.composite
def timestamps(draw) -> str:
    t = draw(past_times)
    text = t.isoformat()
    if t.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return text


rich_process = st.fixed_dictionaries(
    {"name": clean_text(1, 40)},
    optional={
        "pid": st.integers(0, 2**63 - 1) | st.none(), "ppid": st.integers(0, 2**63 - 1) | st.none(),
        "exe": clean_text(0, 120), "username": clean_text(0, 30), "cmdline": clean_text(0, 200),
        "cpu_percent": st.floats(0, 100_000) | st.integers(0, 100_000) | st.none(),
        "memory_rss": st.integers(0, 2**63 - 1) | st.none(),
    },
)
legacy_process = clean_text(1, 40)


@st.composite
def valid_snapshots(draw) -> dict:
    snapshot = {"hostname": draw(clean_text(1, 60)), "timestamp": draw(timestamps())}
    if draw(st.booleans()):
        snapshot["os"] = draw(st.sampled_from(["linux", "windows", "darwin", "Windows 11", "", None]))
    snapshot["processes"] = draw(st.lists(rich_process | legacy_process, min_size=1, max_size=12))
    return snapshot


WRONG_TYPES = [0, -1, 3.5, True, False, [], ["x"], {}, {"a": 1}]
BAD_NUMBERS = [-1, -(2**63), 2**63, 2**100, "7", "", True, 1.5, [], {}, 1e300]
BAD_TIMES = ["", "yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T25:00:00Z",
             "2099-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
             "2024-01-01T00:00:00+25:00", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00",
             "\x002024-01-01T00:00:00Z", "2024-01-01T00:00:00Z" * 50, 1_700_000_000, 1.7e9, True, None, [], {}]


def long(n: int) -> str:
    return "x" * n


@st.composite
def mutated_snapshots(draw) -> tuple[dict, str, str]:
    """(payload, label, what) — label is the oracle: 'valid', 'invalid' or 'either'."""
    s = draw(valid_snapshots())
    procs = s["processes"]
    i = draw(st.integers(0, len(procs) - 1))
    kind = draw(st.sampled_from([
        "none", "extra_fields", "null_optionals", "drop_required", "hostname_type", "hostname_blank", "hostname_nul",
        "hostname_long", "timestamp_bad", "timestamp_naive", "timestamp_odd_valid", "processes_type", "processes_empty",
        "processes_too_many", "process_item_type", "name_bad", "number_bad", "text_field_type", "text_field_nul",
        "text_field_long", "os_type", "os_odd", "nested_garbage",
        # "lone_surrogate" is left out while it is a known 500 (KNOWN_5XX); put it back when that is fixed.
    ]))
    if kind == "none":
        return s, "valid", kind
    if kind == "extra_fields":
        s[draw(st.text(max_size=10).filter(lambda k: k not in s))] = draw(json_values)
        if isinstance(procs[i], dict):
            key = draw(st.text(max_size=10).filter(lambda k: k not in rich_keys))
            procs[i][key] = draw(json_values)
        return s, "valid", kind
    if kind == "null_optionals":
        s["os"] = None
        if isinstance(procs[i], dict):
            procs[i].update({k: None for k in ("pid", "ppid", "exe", "username", "cmdline", "cpu_percent", "memory_rss")})
        return s, "valid", kind
    if kind == "drop_required":
        field = draw(st.sampled_from(["hostname", "timestamp", "processes"]))
        del s[field]
        return s, "invalid", f"{kind}:{field}"
    if kind == "hostname_type":
        not_text = json_values.filter(lambda v: v is not None and not isinstance(v, str))
        s["hostname"] = draw(st.sampled_from(WRONG_TYPES) | not_text)
        return s, "invalid", kind
    if kind == "hostname_blank":
        s["hostname"] = draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))
        return s, "invalid", kind
    if kind == "hostname_nul":
        s["hostname"] = s["hostname"] + "\x00"
        return s, "invalid", kind
    if kind == "hostname_long":
        s["hostname"] = long(draw(st.sampled_from([255, 256, 1000, 100_000])))
        return s, "either", kind
    if kind == "timestamp_bad":
        s["timestamp"] = draw(st.sampled_from(BAD_TIMES))
        return s, "invalid", kind
    if kind == "timestamp_naive":
        s["timestamp"] = draw(past_times).replace(tzinfo=None).isoformat()
        return s, "either", kind
    if kind == "timestamp_odd_valid":
        s["timestamp"] = draw(st.sampled_from(["2024-01-01T00:00:00.000001Z", "2024-01-01T00:00:00+00:00",
                                               "2024-02-29T23:59:59.999999-12:00", "2000-01-01T13:59:59+14:00",
                                               "2024-01-01t00:00:00z", " 2024-01-01T00:00:00Z "]))
        return s, "either", kind
    if kind == "processes_type":
        s["processes"] = draw(st.sampled_from(["bash", 3, {"name": "bash"}, True]))
        return s, "invalid", kind
    if kind == "processes_empty":
        s["processes"] = []
        return s, "invalid", kind
    if kind == "processes_too_many":
        s["processes"] = ["p"] * (MAX_PROCESSES + draw(st.integers(1, 20)))
        return s, "invalid", kind
    if kind == "process_item_type":
        procs[i] = draw(st.sampled_from([None, 3, 2.5, True, [], ["bash"], [{"name": "bash"}]]))
        return s, "invalid", kind
    if kind == "name_bad":
        bad = draw(st.sampled_from([None, "", "   ", "a\x00b", 7, [], {}, True]))
        if isinstance(procs[i], str) or draw(st.booleans()):
            procs[i] = bad if isinstance(bad, str) else {"name": bad}
        else:
            procs[i]["name"] = bad
        return s, "invalid", kind
    if kind == "number_bad":
        field = draw(st.sampled_from(["pid", "ppid", "memory_rss", "cpu_percent"]))
        value = draw(st.sampled_from(BAD_NUMBERS if field != "cpu_percent" else [-1, -0.5, 100_001, 1e300, "high", True, [], {}]))
        procs[i] = {"name": "victim", field: value}
        return s, "invalid", f"{kind}:{field}={value!r}"
    if kind == "text_field_type":
        field = draw(st.sampled_from(["exe", "username", "cmdline"]))
        procs[i] = {"name": "victim", field: draw(st.sampled_from([1, 2.5, True, ["/bin/sh"], {"p": 1}]))}
        return s, "invalid", f"{kind}:{field}"
    if kind == "text_field_nul":
        field = draw(st.sampled_from(["exe", "username", "cmdline", "name"]))
        procs[i] = {"name": "victim", field: "abc\x00def"}
        return s, "invalid", f"{kind}:{field}"
    if kind == "text_field_long":
        field, n = draw(st.sampled_from([("name", 255), ("name", 256), ("exe", 2048), ("exe", 2049),
                                         ("username", 256), ("cmdline", 32768), ("cmdline", 40000)]))
        procs[i] = {"name": "victim", field: long(n)}
        return s, "either", f"{kind}:{field}={n}"
    if kind == "os_type":
        s["os"] = draw(st.sampled_from([1, True, ["linux"], {"n": "linux"}, "lin\x00ux"]))
        return s, "invalid", kind
    if kind == "os_odd":
        # Lengths around the 32 limit and case folding. Unicode that grows when lower-cased ('İ' -> 'i̇') is in
        # KNOWN_5XX below (a 500 on PostgreSQL), so it is not drawn here.
        s["os"] = draw(st.sampled_from(["İ" * 16, "ǅ" * 32, long(32), long(33), "  WINDOWS  ", "WIN" + "X" * 29, "ß" * 32]))
        return s, "either", f"{kind}:{s['os'][:8]!r}x{len(s['os'])}"
    if kind == "nested_garbage":
        procs[i] = {"name": "victim", "exe": {"nested": [{"deep": [None] * 3}]}, "pid": [[1]]}
        return s, "invalid", kind
    if kind == "lone_surrogate":
        field = draw(st.sampled_from(["hostname", "name"]))
        if field == "hostname":
            s["hostname"] = "host\ud800"
        else:
            procs[i] = {"name": "bad\udfff"}
        return s, "either", f"{kind}:{field}"
    raise AssertionError(kind)


rich_keys = {"name", "pid", "ppid", "exe", "username", "cmdline", "cpu_percent", "memory_rss"}


def contract_rejects(payload) -> bool:
    """What API.md makes invalid on its face: not an object, required fields missing or of the wrong type."""
    if not isinstance(payload, dict):
        return True
    host, ts, procs = payload.get("hostname"), payload.get("timestamp"), payload.get("processes")
    if not isinstance(host, str) or not host.strip() or not isinstance(ts, str):
        return True
    if not isinstance(procs, list) or not procs or len(procs) > MAX_PROCESSES:
        return True
    for p in procs:
        name = p if isinstance(p, str) else p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or not name.strip():
            return True
    return False


def names_of(payload) -> list[str]:
    return [(p if isinstance(p, str) else p["name"]).strip() for p in payload["processes"]]


def to_json(payload) -> str:
    """json.dumps writes lone surrogates as \\udXXX escapes: what a misbehaving agent would send."""
    return json.dumps(payload)


# --- (1) JSON values and mutated snapshots to /snapshots/ -------------------------------------------


def check_single(agent: APIClient, payload, label: str, what: str = ""):
    with rolled_back():
        before = counts()
        response = post_json(agent, SNAPSHOT, raw=to_json(payload))
        assert_no_server_error(response, payload)
        after = counts()
        code = response.status_code
        event(f"{label} -> {code}")
        if label == "invalid" or contract_rejects(payload):
            assert code == 400, (what, code, response.content[:300], repr(payload)[:500])
        if label == "valid":
            assert code == 201, (what, code, response.content[:300], repr(payload)[:500])
        if code == 400:
            assert_contract_400(response)
            assert after == before, (what, before, after)
            return
        assert code == 201, (what, code, response.content[:300])
        body = response.json()
        n = len(payload["processes"])
        assert body["processes"] == n
        assert (after[0] - before[0], after[1] - before[1]) == (1, n), (what, before, after)
        snapshot = Snapshot.objects.select_related("endpoint").get(pk=body["snapshot_id"])
        assert snapshot.process_count == n
        assert snapshot.endpoint.hostname == payload["hostname"].strip() == body["hostname"]
        stored = list(ProcessRecord.objects.filter(snapshot=snapshot).order_by("index").values_list("index", "name"))
        assert stored == list(enumerate(names_of(payload))), what  # nothing truncated, nothing reordered
        # The same (hostname, timestamp) again: 200, same snapshot, nothing stored twice.
        again = post_json(agent, SNAPSHOT, raw=to_json(payload))
        assert again.status_code == 200 and again.json()["snapshot_id"] == body["snapshot_id"]
        assert counts() == after


@pytest.mark.django_db
@FUZZ
@given(case=mutated_snapshots())
def test_mutated_snapshots_are_stored_whole_or_refused_whole(agent, case):
    payload, label, what = case
    check_single(agent, payload, label, what)


@pytest.mark.django_db
@FUZZ
@given(payload=json_values | st.dictionaries(st.sampled_from(["hostname", "timestamp", "os", "processes"]), json_values))
def test_arbitrary_json_to_the_snapshot_endpoint(agent, payload):
    check_single(agent, payload, "either")


# --- (1b) the batch endpoint ------------------------------------------------------------------------


@pytest.mark.django_db
@FUZZ
@given(items=st.lists(mutated_snapshots() | json_values.map(lambda v: (v, "either", "json")), min_size=1, max_size=6),
       duplicate=st.booleans())
def test_batch_items_stand_or_fall_alone(agent, items, duplicate):
    payloads = [p for p, _, _ in items]
    labels = [label for _, label, _ in items]
    if duplicate:
        payloads.append(payloads[0])
        labels.append(labels[0])
    with rolled_back():
        before = counts()
        response = post_json(agent, BATCH, raw=to_json(payloads))
        assert_no_server_error(response, payloads)
        assert response.status_code == 201, response.content[:300]
        results = response.json()["results"]
        assert len(results) == len(payloads)
        stored: dict[int, int] = {}
        for payload, label, result in zip(payloads, labels, results):
            rejected = label == "invalid" or contract_rejects(payload)
            if rejected:
                assert "error" in result, (label, repr(payload)[:300], result)
            if label == "valid":
                # A valid item may only be refused as a repeat of an earlier item's (hostname, timestamp)
                # with other content: 409, what is stored is never overwritten.
                assert "snapshot_id" in result or result["error"]["status"] == 409, (repr(payload)[:300], result)
            if "error" in result:
                assert result["error"]["detail"].endswith(".") and isinstance(result["error"]["errors"], dict)
                assert "snapshot_id" not in result
            else:
                sid = result["snapshot_id"]
                if sid not in stored:  # the first item with a (hostname, timestamp) is the one stored
                    assert result["processes"] == len(payload["processes"]), (repr(payload)[:300], result)
                    stored[sid] = result["processes"]
                else:  # a later item with the same key answers with the stored snapshot
                    assert result["processes"] == stored[sid]
        after = counts()
        assert after[0] - before[0] == len(stored)
        assert after[1] - before[1] == sum(stored.values())
        for snapshot_id, n in stored.items():
            assert ProcessRecord.objects.filter(snapshot_id=snapshot_id).count() == n


@pytest.mark.django_db
@FUZZ
@given(payload=json_values.filter(lambda v: not isinstance(v, list)) | st.just([])
       | st.lists(st.just({"hostname": "h", "timestamp": "2024-01-01T00:00:00Z", "processes": ["a"]}),
                  min_size=101, max_size=103))
def test_batch_that_is_not_a_list_of_1_to_100_is_400_and_stores_nothing(agent, payload):
    with rolled_back():
        before = counts()
        response = post_json(agent, BATCH, payload)
        assert_no_server_error(response, payload)
        assert response.status_code == 400, response.content[:300]
        assert_contract_400(response)
        assert counts() == before


# --- (2) raw bytes ----------------------------------------------------------------------------------

CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/octet-stream"]


@pytest.mark.django_db
@FUZZ
@given(body=st.binary(max_size=400) | st.sampled_from([b"", b"{", b"\xff\xfe{}", b"\x00", b"null", b"[]", b"NaN",
                                                        b'{"hostname": NaN}', b"\xef\xbb\xbf{}", b"[" * 500 + b"]" * 500]),
       # (much deeper nesting is a known 500: test_deeply_nested_json_is_a_400 below)
       url=st.sampled_from([SNAPSHOT, BATCH, "/ingest/process-snapshot"]), content_type=st.sampled_from(CONTENT_TYPES))
def test_raw_bytes_never_break_ingestion(agent, body, url, content_type):
    with rolled_back():
        before = counts()
        response = agent.post(url, data=body, content_type=content_type)
        assert_no_server_error(response, body)
        if url == BATCH and response.status_code == 201:  # a JSON array of non-snapshots: each item refused
            assert all("error" in r for r in response.json()["results"]), response.content[:300]
        else:
            assert response.status_code in (400, 413, 415), (response.status_code, response.content[:300], body[:100])
            detail = response.json()["detail"]
            assert isinstance(detail, str) and detail.endswith("."), detail
        assert counts() == before


# --- (3) the panic button -----------------------------------------------------------------------------


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(admin_user)}")
    return client


reasons = st.none() | st.text(max_size=50) | st.sampled_from(["", "  ", long(1000), long(1001), "a\x00b", 5, [], {}, True])
exclude_items = st.text(max_size=20) | st.sampled_from(["", long(255), long(256), "x\x00", 3, None, [], {}])
excludes = st.none() | st.lists(exclude_items, max_size=5) | st.sampled_from(["xmrig", 3, {}, ["a"] * 201, ["a"] * 200])
retrain_bodies = (
    json_values
    | st.fixed_dictionaries({}, optional={"reason": reasons, "exclude": excludes})
    | st.fixed_dictionaries({"reason": reasons, "exclude": excludes}, optional={"extra": json_values})
)


def well_formed(body) -> bool:
    """API.md: the body is optional, else {"reason": text, "exclude": [process names]}."""
    if body in (None, {}):
        return True
    if not isinstance(body, dict):
        return False
    reason, exclude = body.get("reason"), body.get("exclude")
    ok_reason = reason is None or (isinstance(reason, str) and len(reason) <= 1000 and "\x00" not in reason)
    ok_exclude = exclude is None or (
        isinstance(exclude, list) and len(exclude) <= 200
        and all(isinstance(x, str) and 0 < len(x) <= 255 and "\x00" not in x for x in exclude)
    )
    return ok_reason and ok_exclude


@pytest.mark.django_db
@FUZZ
@given(body=retrain_bodies)
def test_retrain_with_arbitrary_bodies(admin_api, body):
    with rolled_back():
        runs, started = TrainingRun.objects.count(), AuditEvent.objects.filter(action="retrain.started").count()
        response = post_json(admin_api, RETRAIN, body)
        assert_no_server_error(response, body)
        code = response.status_code
        event(f"{'well-formed' if well_formed(body) else 'other'} -> {code}")
        assert code in (200, 400, 429), (code, response.content[:300])
        if well_formed(body):
            assert code == 200, (response.content[:300], repr(body)[:300])
        if code == 200:
            data = response.json()
            assert data["status"] == "training_started"
            run = TrainingRun.objects.get(pk=data["run_id"])
            assert TrainingRun.objects.count() == runs + 1
            if isinstance(body, dict) and isinstance(body.get("reason"), str):
                assert run.reason == body["reason"].strip()
            if isinstance(body, dict) and isinstance(body.get("exclude"), list):
                assert run.exclude == sorted({x.strip() for x in body["exclude"] if x.strip()})
        else:
            assert TrainingRun.objects.count() == runs
            assert AuditEvent.objects.filter(action="retrain.started").count() == started
            detail = response.json()["detail"]
            assert isinstance(detail, str) and detail.endswith("."), detail


# --- inputs that once made the product answer 5xx (found by the properties above) ----------------------
# Kept as explicit regression cases, each with the answer the contract now requires.

# A valid ISO time at the edge of the datetime range overflows when converted to UTC.
# Lone UTF-16 surrogates (valid JSON escapes such as \\ud800) cannot be encoded by the database driver.
# 'İ'.lower() is two characters: an `os` within its length limit could grow past it once lower-cased (PostgreSQL
# enforces varchar lengths, SQLite does not); the contract does not say whether that is a 400 or stored, only no 5xx.
REGRESSIONS = {
    "timestamp overflows converting to UTC (late)": (
        {"hostname": "h", "timestamp": "9999-12-31T23:59:59-12:00", "processes": ["bash"]}, {400}),
    "timestamp overflows converting to UTC (early)": (
        {"hostname": "h", "timestamp": "0001-01-01T00:00:00+01:00", "processes": ["bash"]}, {400}),
    "lone surrogate in hostname": (
        {"hostname": "host\ud800", "timestamp": "2024-01-01T00:00:00Z", "processes": ["bash"]}, {400}),
    "lone surrogate in legacy process name": (
        {"hostname": "h", "timestamp": "2024-01-01T00:00:00Z", "processes": ["bad\udfff"]}, {400}),
    "lone surrogate in exe": (
        {"hostname": "h", "timestamp": "2024-01-01T00:00:00Z", "processes": [{"name": "a", "exe": "/x\ud800"}]}, {400}),
    "lone surrogate in os": (
        {"hostname": "h", "timestamp": "2024-01-01T00:00:00Z", "os": "lin\udc00", "processes": ["a"]}, {400}),
    "os that grows when lower-cased": (
        {"hostname": "h", "timestamp": "2024-01-01T00:00:00Z", "os": "İ" * 20, "processes": ["bash"]}, {201, 400}),
}
GOOD = {"hostname": "good-neighbour", "timestamp": "2024-01-01T00:00:00Z", "processes": ["bash", "sshd"]}


@pytest.mark.django_db
@pytest.mark.parametrize("url", [SNAPSHOT, BATCH], ids=["single", "batch"])
@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_known_inputs_are_answered_without_a_server_error(agent, name, url):
    payload, expected = REGRESSIONS[name]
    with rolled_back():
        before = counts()
        response = post_json(agent, url, raw=to_json([payload, GOOD] if url == BATCH else payload))
        assert_no_server_error(response, payload)
        if url == SNAPSHOT:
            assert response.status_code in expected, response.content[:300]
            if response.status_code == 400:
                assert_contract_400(response)
                assert counts() == before
        else:  # the good neighbour in the same batch is stored whatever happens to the bad one
            assert response.status_code == 201
            results = response.json()["results"]
            if len(expected) == 1:
                assert ("error" in results[0]) == (expected == {400}), results[0]
            assert "snapshot_id" in results[1]
            assert Snapshot.objects.filter(endpoint__hostname="good-neighbour").count() == 1


# Lone surrogates in the retrain body's reason or exclude could not be stored (text and jsonb columns).
RETRAIN_REGRESSIONS = {"lone surrogate in reason": {"reason": "oops\ud800"},
                       "lone surrogate in exclude": {"exclude": ["xm\udbffrig"]}}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(RETRAIN_REGRESSIONS))
def test_retrain_known_inputs_are_a_400_and_start_nothing(admin_api, name):
    body = RETRAIN_REGRESSIONS[name]
    with rolled_back():
        response = post_json(admin_api, RETRAIN, raw=to_json(body))
        assert_no_server_error(response, body)
        assert response.status_code == 400
        assert not TrainingRun.objects.exists()


# A deeply nested body makes the JSON parser raise RecursionError, which is not a ValueError.
DEEP = {"unclosed": b"[" * 5000, "closed": b"[" * 5000 + b"]" * 5000, "objects": b'{"a":' * 3000 + b"1" + b"}" * 3000}


@pytest.mark.django_db
@pytest.mark.parametrize("url", [SNAPSHOT, BATCH, RETRAIN])
@pytest.mark.parametrize("shape", list(DEEP))
def test_deeply_nested_json_is_a_400(agent, admin_api, url, shape):
    client = admin_api if url == RETRAIN else agent
    with rolled_back():
        before, runs = counts(), TrainingRun.objects.count()
        response = client.post(url, data=DEEP[shape], content_type="application/json")
        assert_no_server_error(response, shape)
        assert response.status_code == 400
        assert counts() == before and TrainingRun.objects.count() == runs
