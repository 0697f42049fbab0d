"""Who may call what: every principal against every route of the contract (API.md) and the page.

The table below is the specification: one row per route, one column per principal.
  200/201  allowed                      401  not authenticated (API)
  403      authenticated, not allowed   LOGIN  302 to /login/ (page routes, no session)
  PAGE     302 back to /live-telemetry/ (the page's form posts, accepted)

Refused POSTs must store nothing: no Snapshot, no ProcessRecord, no TrainingRun, no change of the
active model. Each cell is its own test, so the per-test cache clearing in tests/conftest.py keeps
rate limits from leaking between cells.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from axon.models import ModelVersion, TrainingRun
from telemetry.models import AgentKey, Endpoint, ProcessRecord, Snapshot
from tests import fleet
from tests.conftest import _user
from tests.payloads import legacy, rich

LOGIN = "302 /login/"
PAGE = "302 /live-telemetry/"

PRINCIPALS = (
    "anonymous", "analyst_jwt", "admin_jwt", "analyst_session", "admin_session", "agent", "revoked_agent", "no_role",
)

# Why a valid agent key gets 403 (not 401) outside ingestion, and a logged-in user 403 on ingestion:
# API.md — "Unauthenticated → 401 ... Authenticated but not allowed → 403"; both are authenticated principals.
# Page routes are session-only: a bearer token or an agent key is no browser session → redirect to log in.
#
# route id             method  path                                         anon   an_jwt ad_jwt an_ses ad_ses agent  revoked no_role
ROUTES = {
    "snapshot":        ("POST", "/api/telemetry/snapshots/",                (401,   403,   403,   403,   403,   201,   401,   403)),
    "snapshot_batch":  ("POST", "/api/telemetry/snapshots/batch/",          (401,   403,   403,   403,   403,   201,   401,   403)),
    "legacy_ingest":   ("POST", "/ingest/process-snapshot",                 (401,   403,   403,   403,   403,   201,   401,   403)),
    "summary":         ("GET",  "/api/telemetry/summary/",                  (401,   200,   200,   200,   200,   403,   401,   403)),
    "anomalies":       ("GET",  "/api/telemetry/anomalies/",                (401,   200,   200,   200,   200,   403,   401,   403)),
    "retrain":         ("POST", "/api/axon/retrain",                        (401,   403,   200,   403,   200,   403,   401,   403)),
    "retrain_slash":   ("POST", "/api/axon/retrain/",                       (401,   403,   200,   403,   200,   403,   401,   403)),
    "retrain_preview": ("GET",  "/api/axon/retrain/preview/",               (401,   403,   200,   403,   200,   403,   401,   403)),
    "runs":            ("GET",  "/api/axon/runs/",                          (401,   200,   200,   200,   200,   403,   401,   403)),
    "run_detail":      ("GET",  "/api/axon/runs/{run}/",                    (401,   200,   200,   200,   200,   403,   401,   403)),
    "axon_status":     ("GET",  "/api/axon/status/",                        (401,   200,   200,   200,   200,   403,   401,   403)),
    "models":          ("GET",  "/api/axon/models/",                        (401,   200,   200,   200,   200,   403,   401,   403)),
    "model_activate":  ("POST", "/api/axon/models/{version}/activate/",     (401,   403,   200,   403,   200,   403,   401,   403)),
    "approvals":       ("GET",  "/api/axon/approvals/",                     (401,   200,   200,   200,   200,   403,   401,   403)),
    "audit_events":    ("GET",  "/api/audit/events/",                       (401,   403,   200,   403,   200,   403,   401,   403)),
    "api_schema":      ("GET",  "/api/schema/",                             (401,   200,   200,   200,   200,   200,   401,   200)),
    "api_docs":        ("GET",  "/api/docs/",                               (LOGIN, LOGIN, LOGIN, 200,   200,   LOGIN, LOGIN,  200)),
    "page":            ("GET",  "/live-telemetry/",                         (LOGIN, LOGIN, LOGIN, 200,   200,   LOGIN, LOGIN,  403)),
    "page_data":       ("GET",  "/live-telemetry/data/",                    (LOGIN, LOGIN, LOGIN, 200,   200,   LOGIN, LOGIN,  403)),
    "page_retrain":    ("POST", "/live-telemetry/retrain/",                 (LOGIN, LOGIN, LOGIN, 403,   PAGE,  LOGIN, LOGIN,  403)),
    "page_activate":   ("POST", "/live-telemetry/models/{version}/activate/", (LOGIN, LOGIN, LOGIN, 403, PAGE,  LOGIN, LOGIN,  403)),
    "healthz":         ("GET",  "/healthz",                                 (200,   200,   200,   200,   200,   200,   200,   200)),
}

INGEST = {"snapshot", "snapshot_batch", "legacy_ingest"}
STARTS_RUN = {"retrain", "retrain_slash", "page_retrain"}
ACTIVATES = {"model_activate", "page_activate"}


def _cells():
    for route, (_method, _path, expected) in ROUTES.items():
        assert len(expected) == len(PRINCIPALS), route
        for principal, want in zip(PRINCIPALS, expected):
            yield pytest.param(route, principal, want, id=f"{route}-{principal}")


def _client(principal: str) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False  # a 500 is an answer to assert on, not an exception in the test
    if principal == "anonymous":
        return client
    if principal in ("agent", "revoked_agent"):
        _, key = AgentKey.objects.create_key(name=principal)
        if principal == "revoked_agent":
            AgentKey.objects.filter(name=principal).update(revoked=True)
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client
    role, _, how = principal.partition("_")
    user: User = {
        "analyst": lambda: _user("mx-analyst", "Analyst", email="mx-analyst@voltaxe.test"),
        "admin": lambda: _user("mx-admin", "Security Admin", email="mx-admin@voltaxe.test"),
        "no": lambda: _user("mx-norole", None),
    }[role]()
    if how == "jwt":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    else:  # a real session cookie, going through SessionAuthentication / login_required
        client.force_login(user)
    return client


def _world(route: str) -> dict:
    """What the route needs to exist: a finished run to read, a model version that is not active yet."""
    world = {"run": TrainingRun.objects.create(trigger="command", status="succeeded", stage="done").pk, "version": 1}
    if route in ACTIVATES:
        fleet.history(days=1)
        assert fleet.train().status == "succeeded"
        ModelVersion.objects.update(is_active=False, status=ModelVersion.Status.RETIRED)
        world["version"] = ModelVersion.objects.get().version
    return world


def _state() -> dict:
    return {
        "snapshots": Snapshot.objects.count(), "records": ProcessRecord.objects.count(),
        "endpoints": Endpoint.objects.count(), "runs": TrainingRun.objects.count(),
        "active": list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)),
    }


def _send(client: APIClient, route: str, method: str, path: str):
    if method == "GET":
        return client.get(path)
    if route == "snapshot":
        return client.post(path, rich("matrix-host"), format="json")
    if route == "snapshot_batch":
        return client.post(path, [rich("matrix-host")], format="json")
    if route == "legacy_ingest":
        return client.post(path, legacy("matrix-host"), format="json")
    if route in ("retrain", "retrain_slash"):
        return client.post(path, {"reason": "authorization matrix"}, format="json")
    if route.startswith("page_"):
        return client.post(path, {"reason": "authorization matrix"})  # the page's form post
    return client.post(path, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("route, principal, want", list(_cells()))
def test_authorization_matrix(route, principal, want):
    method, template, _ = ROUTES[route]
    world = _world(route)
    path = template.format(**world)
    client = _client(principal)
    before = _state()

    response = _send(client, route, method, path)

    if isinstance(want, str):  # a redirect
        code, location = want.split()
        assert response.status_code == int(code), (response.status_code, response.content[:300])
        assert response["Location"].split("?")[0] == location, response["Location"]
    else:
        assert response.status_code == want, (response.status_code, response.content[:300])
    is_api = path.startswith("/api/") or path == "/ingest/process-snapshot"
    if is_api and want == 401:
        if principal == "anonymous":
            assert response.json() == {"detail": "Not authenticated"}
        else:
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    if is_api and want == 403:
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]

    after = _state()
    accepted = want in (200, 201, PAGE)
    if method == "GET" or not accepted:
        assert after == before, f"{method} {path} as {principal} changed the database: {before} -> {after}"
        return
    # Accepted POSTs did what they say, and only that.
    if route in INGEST:
        assert after["snapshots"] == before["snapshots"] + 1
        expected_processes = 3
        assert after["records"] == before["records"] + expected_processes
        assert after["runs"] == before["runs"] and after["active"] == before["active"]
    elif route in STARTS_RUN:
        assert after["runs"] == before["runs"] + 1
        assert TrainingRun.objects.latest("id").status == "queued"
        assert after["snapshots"] == before["snapshots"] and after["active"] == before["active"]
    elif route in ACTIVATES:
        assert before["active"] == [] and after["active"] == [world["version"]]
        assert after["runs"] == before["runs"] and after["snapshots"] == before["snapshots"]
    else:  # pragma: no cover - every POST route is in one of the groups above
        pytest.fail(f"no expectation for accepted POST {route}")


def test_the_table_covers_every_route_of_the_contract():
    """A new route in the URLconf without a row here fails, instead of going unchecked."""
    from django.urls import get_resolver

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern)

    covered = {template for _, template, _ in ROUTES.values()}
    # The log-in doors answer anyone; tests/security/test_login_limits.py and test_token_revocation.py cover them.
    ignored = ("admin/", "login/", "logout/", "api/auth/token/", "api/auth/token/refresh/", "api/auth/logout/", "")
    normalized = {"^retrain/?$": "retrain"}
    missing = []
    for pattern in walk(get_resolver().url_patterns):
        if pattern.startswith("admin/") or pattern in ignored:
            continue
        for raw, plain in normalized.items():
            pattern = pattern.replace(raw, plain)
        concrete = "/" + pattern.replace("<int:pk>", "{run}").replace("<int:version>", "{version}")
        if concrete not in covered and concrete + "/" not in covered:
            missing.append(concrete)
    assert missing == []
