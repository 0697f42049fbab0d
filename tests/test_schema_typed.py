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
