"""The API documents itself, typed: /api/schema/ says what each operation takes, which query parameters it reads and
how it refuses, so that a client can be written from it (issue 20, part 9)."""
from __future__ import annotations

import inspect
import re

import pytest
from django.urls import resolve

from tests.test_schema import contract_routes, shape

METHODS = ("get", "post", "put", "patch", "delete")
# `?since=&hostname=&limit=` after a route in API.md: the query parameters the contract promises.
CONTRACT_QUERY = re.compile(r"`GET (/[^`\s?]+)\?([^`]+)`")
# How views read their query string: request.query_params.get("x"), q.getlist("x"), query_text(q, "x").
READS = re.compile(r"""(?:query_params|\bq)\.get(?:list)?\(\s*"(\w+)"|query_text\(\s*[\w.]+,\s*"(\w+)\"""")


@pytest.fixture
def schema(analyst_client) -> dict:
    response = analyst_client.get("/api/schema/")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", path, method, item[method]


def deref(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def untyped(schema: dict, node: dict, where: str) -> list[str]:
    """Where a body is a free-form object (what Swagger shows as `additionalProp1: string`), or a list of them."""
    node = deref(schema, node)
    if "oneOf" in node or "anyOf" in node or "allOf" in node:
        return [bad for part in node.get("oneOf", node.get("anyOf", node.get("allOf")))
                for bad in untyped(schema, part, where)]
    if node.get("type") == "array":
        return untyped(schema, node.get("items", {}), f"{where}[]")
    if node.get("type") in (None, "object") and not node.get("properties"):
        return [where]
    return []


def bodies(op: dict):
    """(what, schema) of the request and of each 2xx answer."""
    for media, content in op.get("requestBody", {}).get("content", {}).items():
        yield f"request {media}", content.get("schema", {})
    for code, response in op["responses"].items():
        if code.startswith("2"):
            for media, content in response.get("content", {}).items():
                yield f"{code} {media}", content.get("schema", {})


def query_parameters(op: dict) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}


def public(op: dict) -> bool:
    """Anyone may call it: /healthz, and the token doors (which are how one authenticates)."""
    return {} in op.get("security", [{}]) or not op.get("security")


@pytest.mark.django_db
def test_every_request_and_success_body_is_typed(schema):
    loose = [f"{name}: {where}" for name, _, _, op in operations(schema)
             for what, body in bodies(op) for where in untyped(schema, body, what)]
    assert not loose, f"free-form bodies in /api/schema/ (declare them with extend_schema): {loose}"


@pytest.mark.django_db
def test_the_check_above_sees_a_free_form_body(schema):
    # What drf-spectacular writes for a view that declares nothing; the test above must not let it pass.
    assert untyped(schema, {"type": "object", "additionalProperties": {}}, "200") == ["200"]
    assert untyped(schema, {"type": "array", "items": {"type": "object"}}, "request") == ["request[]"]
    assert untyped(schema, {"$ref": "#/components/schemas/Error"}, "400") == []


@pytest.mark.django_db
def test_every_operation_says_how_it_refuses(schema):
    missing = []
    for name, _, _, op in operations(schema):
        needed = set() if public(op) else {"401", "403"}
        if "requestBody" in op or query_parameters(op):
            needed.add("400")
        if "{" in name:
            needed.add("404")
        if lacking := sorted(needed - set(op["responses"])):
            missing.append(f"{name}: {', '.join(lacking)}")
    assert not missing, f"operations that do not declare how they refuse: {missing}"


@pytest.mark.django_db
def test_every_refusal_has_the_contracts_body(schema):
    wrong = []
    for name, _, _, op in operations(schema):
        for code, response in op["responses"].items():
            if not code.startswith("4"):
                continue
            content = response.get("content", {}).get("application/json")
            body = deref(schema, content["schema"]) if content else {}
            fields = set(body.get("properties", {}))
            if "detail" not in fields or (code == "400" and "errors" not in fields) \
                    or (code == "429" and "retry_after" not in fields):
                wrong.append(f"{name} {code}: {sorted(fields)}")
    assert not wrong, f'refusals without {{"detail", "errors"}} (429: "retry_after") in the schema: {wrong}'


def view_reads(path: str, method: str) -> set[str]:
    """The query parameters the view's handler reads, from its source."""
    match = resolve(re.sub(r"\{[^}]+\}", "1", path))
    view = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    handler = getattr(view, method, None) if view else match.func
    if handler is None:
        return set()
    return {a or b for a, b in READS.findall(inspect.getsource(handler))}


@pytest.mark.django_db
def test_get_operations_document_every_query_parameter_they_read_and_the_contract_names(schema):
    promised: dict[str, set[str]] = {}
    for path, query in CONTRACT_QUERY.findall((contract_routes.__globals__["API_MD"]).read_text()):
        promised.setdefault(shape(path), set()).update(re.findall(r"(\w+)=", query))
    assert promised[shape("/api/axon/alerts/")] >= {"status", "q", "ordering", "offset"}  # the parser reads API.md
    missing, seen = [], set()
    for name, path, method, op in operations(schema):
        if method != "get":
            continue
        expected = view_reads(path, method) | promised.get(shape(path), set())
        seen |= {shape(path)} & set(promised)
        if lacking := sorted(expected - query_parameters(op)):
            missing.append(f"{name}: {', '.join(lacking)}")
    assert seen == set(promised), f"contract GETs with a query string that are not in the schema: {set(promised) - seen}"
    assert not missing, f"GET operations whose query parameters are not in the schema: {missing}"


@pytest.mark.django_db
def test_paged_lists_document_their_paging(schema):
    unpaged = []
    for name, _, method, op in operations(schema):
        ok = op["responses"].get("200", {}).get("content", {}).get("application/json")
        if method == "get" and ok and "next" in deref(schema, ok["schema"]).get("properties", {}):
            if not {"offset", "limit"} <= query_parameters(op):
                unpaged.append(name)
    assert not unpaged, f"lists with a `next` page whose offset/limit are not documented: {unpaged}"


# --- the schema says what the API answers: real answers checked against it ---------------------------------

PY_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def mismatches(schema: dict, node: dict, value, where: str) -> list[str]:
    """Where an answer departs from its documented shape (OpenAPI 3.0: `nullable`, enums as $refs)."""
    node = deref(schema, node)
    if value is None and node.get("nullable"):  # a nullable $ref is {"allOf": [$ref], "nullable": true}
        return []
    if "oneOf" in node:
        fits = [mismatches(schema, part, value, where) for part in node["oneOf"]]
        return [] if any(not f for f in fits) else min(fits, key=len)
    if "allOf" in node:
        return [bad for part in node["allOf"] for bad in mismatches(schema, part, value, where)]
    if value is None:
        return [] if node.get("enum") == [None] else [f"{where}: null, not documented as nullable"]
    kind = node.get("type")
    if kind and (not isinstance(value, PY_TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{where}: {type(value).__name__}, documented as {kind}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{where}: {value!r} not in {node['enum']}"]
    if kind == "array":
        return [bad for i, item in enumerate(value) for bad in mismatches(schema, node.get("items", {}), item, f"{where}[{i}]")]
    if kind == "object" and node.get("properties"):
        props = node["properties"]
        bad = [f"{where}.{k}: not documented" for k in value if k not in props]
        bad += [f"{where}.{k}: documented as required, absent" for k in node.get("required", []) if k not in value]
        return bad + [b for k, v in value.items() if k in props for b in mismatches(schema, props[k], v, f"{where}.{k}")]
    return []


def check(schema: dict, response, template: str, method: str = "get", status: int | None = None) -> dict:
    """The answer's status is documented for this operation (and is `status`) and its body has the documented shape."""
    op = schema["paths"][template][method]
    code = str(response.status_code)
    assert status is None or response.status_code == status, (response.status_code, response.content[:300])
    assert code in op["responses"], f"{method.upper()} {template} answered {code}, not documented"
    documented = op["responses"][code].get("content", {}).get("application/json", {}).get("schema")
    body = response.json() if response.content else None
    if documented is None:
        assert body is None, f"{method.upper()} {template} {code} answers a body the schema does not describe"
        return {}
    bad = mismatches(schema, documented, body, f"{method.upper()} {template} {code}")
    assert not bad, bad
    return body


@pytest.fixture
def story(db):
    """A model on the demo history; a miner (high risk) on build-01 and a new report tool on pg-main."""
    from tests import fleet
    from tests.axon.test_exact_approvals import MINER, agent, post, snapshot

    fleet.history(days=2)
    assert fleet.train().status == "succeeded"
    build, pg = agent("build-01"), agent("pg-main")
    assert "xmrig" in post(build, snapshot("build-01", [MINER], seconds_ago=900))
    report = {"name": "reportgen", "exe": "/usr/local/bin/reportgen", "username": "postgres", "cmdline": "reportgen -d"}
    assert "reportgen" in post(pg, snapshot("pg-main", [report], seconds_ago=600))
    return {"build": build, "pg": pg}


@pytest.mark.django_db
def test_what_the_api_answers_is_what_the_schema_says(story, schema, admin_client, anon_client):
    from django.utils import timezone

    from tests.axon.test_exact_approvals import snapshot

    c = admin_client
    # Agents: a snapshot, the same again, a batch with a refused item, events, Sysmon records, the Sentinel's paths.
    again = snapshot("pg-main", [], seconds_ago=60)
    check(schema, story["pg"].post("/api/telemetry/snapshots/", again, format="json"), "/api/telemetry/snapshots/", "post")
    check(schema, story["pg"].post("/ingest/process-snapshot", again, format="json"), "/ingest/process-snapshot", "post")
    batch = check(schema, story["pg"].post("/api/telemetry/snapshots/batch/", [snapshot("pg-main", [], seconds_ago=30),
                                                                             {"hostname": "pg-main"}], format="json"),
                  "/api/telemetry/snapshots/batch/", "post")
    assert "error" in batch["results"][1]
    now = timezone.now().isoformat()
    event = {"hostname": "pg-main", "timestamp": now, "pid": 4100, "ppid": 1, "name": "nc", "exe": "/tmp/nc",
             "cmdline": "nc -l 4444", "username": "postgres"}
    check(schema, story["pg"].post("/api/telemetry/events/", [event], format="json"), "/api/telemetry/events/", "post")
    sysmon = {"EventID": 1, "UtcTime": now[:19].replace("T", " "), "Image": "/usr/bin/socat", "ProcessId": 4200,
              "ParentProcessId": 1, "User": "postgres", "Computer": "pg-main"}
    check(schema, story["pg"].post("/api/telemetry/events/sysmon/", [sysmon, {"EventID": 3}], format="json"),
          "/api/telemetry/events/sysmon/", "post")
    check(schema, story["pg"].post("/ingest/snapshot", {"hostname": "pg-main", "os": "Linux"}, format="json"),
          "/ingest/snapshot", "post")
    check(schema, story["pg"].get("/command/poll"), "/command/poll")
    check(schema, story["pg"].post("/ingest/rootkit_event", {}, format="json"), "/ingest/rootkit_event", "post")

    # People: every read, with something in it.
    check(schema, c.get("/api/telemetry/summary/"), "/api/telemetry/summary/")
    assert check(schema, c.get("/api/telemetry/anomalies/"), "/api/telemetry/anomalies/")["results"]
    assert check(schema, c.get("/api/telemetry/hosts/"), "/api/telemetry/hosts/")["results"]
    check(schema, c.get("/api/telemetry/hosts/pg-main/"), "/api/telemetry/hosts/{hostname}/")
    alerts = check(schema, c.get("/api/axon/alerts/?status=all"), "/api/axon/alerts/")["results"]
    keys = {a["name"]: a["key"] for a in alerts}
    check(schema, c.post("/api/axon/alerts/triage/", {"keys": [keys["reportgen"]], "status": "acknowledged",
                                                      "note": "asking the DBA team"}, format="json"),
          "/api/axon/alerts/triage/", "post")
    detail = check(schema, c.get(f"/api/axon/alerts/{keys['reportgen']}/"), "/api/axon/alerts/{key}/")
    assert detail["observations"] and detail["history"]
    preview = check(schema, c.get("/api/axon/retrain/preview/"), "/api/axon/retrain/preview/")
    assert preview["will_learn"]
    refused = check(schema, c.post("/api/axon/retrain", {"approve": [keys["xmrig"]]}, format="json"),
                    "/api/axon/retrain/", "post")
    assert refused["errors"]["confirm_high_risk"]
    pressed = check(schema, c.post("/api/axon/retrain", {"approve": [keys["reportgen"]], "reason": "the DBA's tool"},
                                   format="json"), "/api/axon/retrain/", "post")
    from axon.services.runs import retrain_run

    assert retrain_run(run_id=pressed["run_id"]).status == "succeeded"
    check(schema, c.get(f"/api/axon/runs/{pressed['run_id']}/"), "/api/axon/runs/{id}/")
    assert check(schema, c.get("/api/axon/runs/"), "/api/axon/runs/")["results"][0]["approved"]
    check(schema, c.get("/api/axon/status/"), "/api/axon/status/")
    models = check(schema, c.get("/api/axon/models/"), "/api/axon/models/")["results"]
    approvals = check(schema, c.get("/api/axon/approvals/"), "/api/axon/approvals/")["results"]
    check(schema, c.post(f"/api/axon/approvals/{approvals[0]['id']}/revoke/"), "/api/axon/approvals/{id}/revoke/", "post")
    check(schema, c.post(f"/api/axon/models/{models[-1]['version']}/activate/"),
          "/api/axon/models/{version}/activate/", "post")
    assert check(schema, c.get("/api/audit/events/"), "/api/audit/events/")["results"]
    created = check(schema, c.post("/api/notifications/channels/", {"name": "soc", "kind": "webhook",
                                                                     "target": "https://hooks.example/voltaxe"},
                                   format="json"), "/api/notifications/channels/", "post")
    assert created["secret"]
    check(schema, c.patch(f"/api/notifications/channels/{created['id']}/", {"min_severity": "high"}, format="json"),
          "/api/notifications/channels/{id}/", "patch")
    check(schema, c.get("/api/notifications/channels/"), "/api/notifications/channels/")
    check(schema, c.get(f"/api/notifications/channels/{created['id']}/"), "/api/notifications/channels/{id}/")
    check(schema, c.get("/api/notifications/deliveries/"), "/api/notifications/deliveries/")
    check(schema, c.delete(f"/api/notifications/channels/{created['id']}/"), "/api/notifications/channels/{id}/", "delete")
    check(schema, anon_client.get("/healthz"), "/healthz")

    # Refusals, in the shapes the schema gives them.
    check(schema, c.get("/api/telemetry/anomalies/?since=yesterday"), "/api/telemetry/anomalies/", status=400)
    check(schema, c.get("/api/axon/alerts/?ordering=random"), "/api/axon/alerts/", status=400)
    check(schema, c.get("/api/axon/alerts/nosuchkey/"), "/api/axon/alerts/{key}/", status=404)
    check(schema, c.get("/api/telemetry/hosts/nosuchhost/"), "/api/telemetry/hosts/{hostname}/", status=404)
    check(schema, anon_client.get("/api/axon/status/"), "/api/axon/status/", status=401)
    check(schema, story["pg"].get("/api/telemetry/summary/"), "/api/telemetry/summary/", status=403)
    check(schema, story["build"].post("/api/telemetry/snapshots/", again, format="json"), "/api/telemetry/snapshots/", "post",
          status=403)
    check(schema, c.post("/api/axon/retrain", {"approve": [keys["xmrig"]], "confirm_high_risk": [keys["xmrig"]]},
                         format="json"), "/api/axon/retrain/", "post", status=429)  # a second press within five minutes


@pytest.mark.django_db
def test_the_answer_check_sees_an_undocumented_field_a_wrong_type_and_a_missing_one(schema):
    error = {"$ref": "#/components/schemas/Error"}
    assert mismatches(schema, error, {"detail": "no", "hint": "x"}, "400") == ["400.hint: not documented"]
    assert mismatches(schema, error, {"detail": 5}, "400") == ["400.detail: int, documented as string"]
    assert mismatches(schema, error, {"errors": {}}, "400") == ["400.detail: documented as required, absent"]
