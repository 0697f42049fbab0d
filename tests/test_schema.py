"""The API documents itself: /api/schema/ lists every route of the contract (../shared/API.md), /api/docs/ shows it."""
from __future__ import annotations

import os
import re

import pytest
from django.urls import Resolver404, resolve

from tests.conftest import REPO

API_MD = REPO.parent / "shared" / "API.md"

# Contract routes API.md names that are not built yet, each with the open issue that builds it. An entry
# that appears in the schema fails the test below, so the set cannot go stale; it only shrinks.
PENDING: set[str] = set()

# `POST /api/axon/retrain`, `GET /api/axon/runs/<id>/`, or a bare `/ingest/rootkit_event` in a list of paths
# (never a lone slash: "`offset`/`limit`" names no route).
ROUTE = re.compile(r"`(?:(GET|POST|PUT|PATCH|DELETE) )?(/[^`\s?]+)[^`]*`")


def contract_routes() -> dict[str, set[str]]:
    """Each path API.md names, with the methods it names for it (none: only the path is named)."""
    if not API_MD.is_file():
        # CI lays ../shared beside the clone: a missing contract there is a broken setup, not a reason to skip.
        if os.environ.get("CI"):
            pytest.fail(f"{API_MD} is missing: the schema cannot be checked against the contract")
        pytest.skip(f"{API_MD} is not beside this checkout")
    routes: dict[str, set[str]] = {}
    for method, path in ROUTE.findall(API_MD.read_text()):
        routes.setdefault(path, set()).update({method} if method else set())
    return routes


def shape(path: str) -> str:
    """/api/axon/runs/<id>/ and /api/axon/runs/{id}/ alike; the schema writes an optional trailing slash as one."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path).rstrip("/")


@pytest.fixture
def schema(analyst_client) -> dict[str, set[str]]:
    """The documented paths (shaped) and their methods."""
    response = analyst_client.get("/api/schema/")
    assert response.status_code == 200, response.content[:300]
    return {shape(path): {method.upper() for method in item} for path, item in response.json()["paths"].items()}


@pytest.mark.django_db
def test_every_contract_route_is_in_the_schema_and_routable(schema):
    routes = contract_routes()
    # The parser reads API.md as meant: methods where named, bare paths from a list.
    assert routes["/api/axon/retrain"] == {"POST"} and "/ingest/rootkit_event" in routes
    missing, unroutable = [], []
    for path, methods in sorted(routes.items()):
        if path in PENDING:
            continue
        if shape(path) not in schema or methods - schema[shape(path)]:
            missing.append(f"{'/'.join(sorted(methods)) or '*'} {path}")
        try:
            resolve(re.sub(r"<[^>]+>", "1", path))
        except Resolver404:
            unroutable.append(path)
    assert not missing, f"contract routes missing from /api/schema/: {missing}"
    assert not unroutable, f"contract routes that do not resolve as written: {unroutable}"


@pytest.mark.django_db
def test_pending_routes_are_still_contract_routes_and_still_absent(schema):
    routes = contract_routes()
    assert PENDING <= set(routes), f"PENDING names paths API.md does not: {sorted(PENDING - set(routes))}"
    arrived = sorted(path for path in PENDING if shape(path) in schema)
    assert not arrived, f"in the schema now, take them out of PENDING ({__file__}): {arrived}"


@pytest.mark.django_db
def test_schema_and_docs_need_a_login_and_the_docs_page_uses_no_cdn(anon_client, client, analyst):
    assert anon_client.get("/api/schema/").status_code == 401
    response = client.get("/api/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    client.force_login(analyst)
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "the docs page loads something from another site"


@pytest.mark.django_db
def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    """A view drf-spectacular cannot describe (a guessed serializer, an unknown authenticator) fails here."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/axon/retrain/" in (tmp_path / "schema.yaml").read_text()
