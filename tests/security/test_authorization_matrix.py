"""Who may call what: every principal against every route of the contract (API.md) and the page.

The table below is the specification: one row per route, one column per principal.
  200/201  allowed                      401  not authenticated (API)
  404      an agent path whose data this server does not collect (JSON, nothing stored)
  403      authenticated, not allowed   LOGIN  302 to /login/ (page routes, no session)
  PAGE     302 back to /live-telemetry/ (the page's form posts, accepted)
  ITEM_403 201 for the batch, its item refused: {"error": {"status": 403, ...}} (each item stands alone)

Refused POSTs must store nothing: no Snapshot, no ProcessRecord, no TrainingRun, no change of the
active model. Each cell is its own test, so the per-test cache clearing in tests/conftest.py keeps
rate limits from leaking between cells.
"""
from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from audit.models import Channel, Delivery
from axon.models import Alert, Approval, ModelVersion, TrainingRun
from axon.selectors import approval_key
from telemetry.models import AgentHost, AgentKey, Endpoint, ProcessRecord, Snapshot
from tests import fleet
from tests.conftest import _user
from tests.payloads import legacy, rich

LOGIN = "302 /login/"
ITEM_403 = "201 item-403"  # the batch is answered, its one item refused with status 403
PAGE = "302 /live-telemetry/"
ALERTS = "302 /alerts/#results"  # the alerts workspace's triage form goes back to the (filtered) list

PRINCIPALS = (
    "anonymous", "analyst_jwt", "admin_jwt", "analyst_session", "admin_session", "agent", "basic_agent", "relay_agent",
    "foreign_agent", "revoked_agent", "no_role",
)
# Agent keys: "agent" is bound to matrix-host (the host every ingest cell reports for) and sends
# `Authorization: Api-Key`; "basic_agent" is bound to it too and sends the key as an HTTP Basic
# password, as a Voltaxe Sentinel does; "relay_agent" may report for any host; "foreign_agent" is a
# valid key bound to another host; "revoked_agent" was bound to matrix-host and revoked.

# Why a valid agent key gets 403 (not 401) outside ingestion, and a logged-in user 403 on ingestion:
# API.md — "Unauthenticated → 401 ... Authenticated but not allowed → 403"; both are authenticated principals.
# Page routes are session-only: a bearer token or an agent key is no browser session → redirect to log in.
#
# route id             method  path                                          anon    an_jwt  ad_jwt  an_ses  ad_ses  agent   basic   relay   foreign revoked no_role
ROUTES = {
    "snapshot":        ("POST", "/api/telemetry/snapshots/",                   (401,    403,    403,    403,    403,    201,    201,    201,    403,    401,    403)),
    "snapshot_batch":  ("POST", "/api/telemetry/snapshots/batch/",             (401,    403,    403,    403,    403,    201,    201,    201,    ITEM_403, 401,    403)),
    "legacy_ingest":   ("POST", "/ingest/process-snapshot",                    (401,    403,    403,    403,    403,    201,    201,    201,    403,    401,    403)),
    "events":          ("POST", "/api/telemetry/events/",                      (401,    403,    403,    403,    403,    201,    201,    201,    ITEM_403, 401,    403)),
    "events_sysmon":   ("POST", "/api/telemetry/events/sysmon/",               (401,    403,    403,    403,    403,    201,    201,    201,    403,    401,    403)),
    "events_ecs":      ("POST", "/api/telemetry/events/ecs/",                  (401,    403,    403,    403,    403,    201,    201,    201,    403,    401,    403)),
    "summary":         ("GET",  "/api/telemetry/summary/",                     (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "anomalies":       ("GET",  "/api/telemetry/anomalies/",                   (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "hosts":           ("GET",  "/api/telemetry/hosts/",                       (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "retrain":         ("POST", "/api/axon/retrain",                           (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "retrain_slash":   ("POST", "/api/axon/retrain/",                          (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "retrain_preview": ("GET",  "/api/axon/retrain/preview/",                  (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "runs":            ("GET",  "/api/axon/runs/",                             (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "run_detail":      ("GET",  "/api/axon/runs/{run}/",                       (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "axon_status":     ("GET",  "/api/axon/status/",                           (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "models":          ("GET",  "/api/axon/models/",                           (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "model_activate":  ("POST", "/api/axon/models/{version}/activate/",        (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "approvals":       ("GET",  "/api/axon/approvals/",                        (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "audit_events":    ("GET",  "/api/audit/events/",                          (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "page":            ("GET",  "/live-telemetry/",                            (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_data":       ("GET",  "/live-telemetry/data/",                       (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_hosts":      ("GET",  "/hosts/",                                     (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_retrain":    ("POST", "/live-telemetry/retrain/",                    (LOGIN,  LOGIN,  LOGIN,  403,    PAGE,   LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_activate":   ("POST", "/live-telemetry/models/{version}/activate/",  (LOGIN,  LOGIN,  LOGIN,  403,    PAGE,   LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "sentinel_poll":   ("GET",  "/command/poll",                               (401,    403,    403,    403,    403,    200,    200,    200,    200,    401,    403)),
    "sentinel_host":   ("POST", "/ingest/snapshot",                            (401,    403,    403,    403,    403,    200,    200,    200,    403,    401,    403)),
    "sentinel_net":    ("POST", "/ingest/network-snapshot",                    (401,    403,    403,    403,    403,    404,    404,    404,    404,    401,    403)),
    "sentinel_susp":   ("POST", "/ingest/suspicious_event",                    (401,    403,    403,    403,    403,    404,    404,    404,    404,    401,    403)),
    "sentinel_rootkit": ("POST", "/ingest/rootkit_event",                      (401,    403,    403,    403,    403,    404,    404,    404,    404,    401,    403)),
    "sentinel_vuln":   ("POST", "/ingest/vulnerability_event",                 (401,    403,    403,    403,    403,    404,    404,    404,    404,    401,    403)),
    "approval_revoke": ("POST", "/api/axon/approvals/{run}/revoke/",          (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "alerts":        ("GET",  "/api/axon/alerts/",                          (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "alerts_triage": ("POST", "/api/axon/alerts/triage/",                   (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "page_preview":  ("GET",  "/live-telemetry/preview/",                   (LOGIN,  LOGIN,  LOGIN,  403,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_triage":   ("POST", "/live-telemetry/triage/",                    (LOGIN,  LOGIN,  LOGIN,  PAGE,   PAGE,   LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_revoke":   ("POST", "/live-telemetry/approvals/{run}/revoke/",    (LOGIN,  LOGIN,  LOGIN,  403,    PAGE,   LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "api_schema":      ("GET",  "/api/schema/",                                (401,    200,    200,    200,    200,    200,    200,    200,    200,    401,    200)),
    "api_docs":        ("GET",  "/api/docs/",                                  (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  200)),
    "healthz":         ("GET",  "/healthz",                                    (200,    200,    200,    200,    200,    200,    200,    200,    200,    200,    200)),
    "channels":        ("GET",  "/api/notifications/channels/",                (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "channel":         ("GET",  "/api/notifications/channels/{run}/",          (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "channel_test":    ("POST", "/api/notifications/channels/{run}/test/",     (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "deliveries":      ("GET",  "/api/notifications/deliveries/",              (401,    403,    200,    403,    200,    403,    403,    403,    403,    401,    403)),
    "alert_detail":    ("GET",  "/api/axon/alerts/{key}/",                     (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "host_detail":     ("GET",  "/api/telemetry/hosts/{host}/",                (401,    200,    200,    200,    200,    403,    403,    403,    403,    401,    403)),
    "page_alerts":     ("GET",  "/alerts/",                                    (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_alert":      ("GET",  "/alerts/{key}/",                              (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_alerts_triage": ("POST", "/alerts/triage/",                          (LOGIN,  LOGIN,  LOGIN,  ALERTS, ALERTS, LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
    "page_host":       ("GET",  "/hosts/{host}/",                              (LOGIN,  LOGIN,  LOGIN,  200,    200,    LOGIN,  LOGIN,  LOGIN,  LOGIN,  LOGIN,  403)),
}

INGEST = {"snapshot", "snapshot_batch", "legacy_ingest"}
EVENTS = {"events", "events_sysmon", "events_ecs"}  # one process start each
HOST_REPORT = {"sentinel_host"}
STARTS_RUN = {"retrain", "retrain_slash", "page_retrain"}
ACTIVATES = {"model_activate", "page_activate"}
TRIAGES = {"alerts_triage", "page_triage", "page_alerts_triage"}
WITH_ALERT = TRIAGES | {"alert_detail", "page_alert", "host_detail", "page_host"}  # need matrix-host's open alert
REVOKES = {"approval_revoke", "page_revoke"}
CHANNELS = {"channel", "channel_test"}
FLAGGED = ("matrix-host", "dropper", "/tmp/dropper", "bash")  # host, name, exe, parent of one open alert


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
    if principal.endswith("agent"):
        scope = AgentKey.Scope.RELAY if principal == "relay_agent" else AgentKey.Scope.HOSTS
        agent, key = AgentKey.objects.create_key(name=principal, scope=scope, revoked=principal == "revoked_agent")
        if scope == AgentKey.Scope.HOSTS:
            AgentHost.objects.create(hostname="other-host" if principal == "foreign_agent" else "matrix-host", key=agent)
        if principal == "basic_agent":
            client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"agent:{key}".encode()).decode())
        else:
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
    world = {"run": TrainingRun.objects.create(trigger="command", status="succeeded", stage="done").pk, "version": 1,
             "key": approval_key(*FLAGGED), "host": FLAGGED[0]}
    if route in REVOKES:  # the route's <int:pk> is filled from world["run"]
        Approval.objects.create(pk=world["run"], hostname="matrix-host", name="tool", exe="/opt/tool", parent="bash")
    if route in WITH_ALERT:
        host, name, exe, parent = FLAGGED
        endpoint = Endpoint.objects.create(hostname=host, first_seen=timezone.now(), last_seen=timezone.now())
        snap = Snapshot.objects.create(endpoint=endpoint, timestamp=timezone.now(), process_count=1, anomaly_count=1,
                                       model_number=1)
        ProcessRecord.objects.create(snapshot=snap, endpoint=endpoint, observed_at=snap.timestamp, hour=0, index=0,
                                     name=name, name_norm=name, exe=exe, exe_norm=exe, parent_name=parent, score=0.9,
                                     flagged=True, status="open", reasons=["never seen"])
    if route in CHANNELS:  # the route's <int:pk> is filled from world["run"]; e-mail: the test's mail outbox answers
        Channel.objects.create(pk=world["run"], name="matrix", kind="email", target="soc@voltaxe.test", events=["*"])
    if route in ACTIVATES:
        fleet.history(days=1)
        assert fleet.train().status == "succeeded"
        ModelVersion.objects.update(is_active=False)
        world["version"] = ModelVersion.objects.get().version
    return world


def _state() -> dict:
    return {
        "snapshots": Snapshot.objects.count(), "records": ProcessRecord.objects.count(),
        "endpoints": Endpoint.objects.count(), "runs": TrainingRun.objects.count(),
        "active": list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)),
        "approvals": Approval.objects.count(),
        "triaged": list(Alert.objects.values_list("status", flat=True)),
        "deliveries": Delivery.objects.count(),
    }


def _send(client: APIClient, route: str, method: str, path: str):
    if method == "GET":
        return client.get(path)
    if route == "snapshot":
        return client.post(path, rich("matrix-host"), format="json")
    if route == "snapshot_batch":
        return client.post(path, [rich("matrix-host")], format="json")
    if route in EVENTS:
        start = {"hostname": "matrix-host", "timestamp": timezone.now().isoformat(), "name": "whoami", "pid": 7,
                 "exe": "/usr/bin/whoami"}
        if route == "events_sysmon":
            start = {"EventID": 1, "Computer": "matrix-host", "UtcTime": f"{timezone.now():%Y-%m-%d %H:%M:%S.%f}"[:23],
                     "ProcessId": 7, "Image": "C:\\Windows\\System32\\whoami.exe"}
        if route == "events_ecs":
            start = {"@timestamp": timezone.now().isoformat(), "event": {"code": "1"}, "host": {"name": "matrix-host"},
                     "process": {"pid": 7, "executable": "/usr/bin/whoami", "name": "whoami"}}
        return client.post(path, [start], format="json")
    if route == "legacy_ingest":
        return client.post(path, legacy("matrix-host"), format="json")
    if route == "sentinel_host":
        return client.post(path, {"hostname": "matrix-host", "os": "darwin", "processes": [{"pid": 1, "name": "launchd"}]},
                           format="json")
    if route.startswith("sentinel_"):
        return client.post(path, {"hostname": "matrix-host", "events": [{"kind": "made up by the agent"}]}, format="json")
    if route in ("retrain", "retrain_slash"):
        return client.post(path, {"reason": "authorization matrix"}, format="json")
    if route in TRIAGES:
        body = {"keys": [approval_key(*FLAGGED)], "status": "acknowledged", "note": "authorization matrix"}
        if route.startswith("page_"):  # the page's form: one "key" field per ticked box
            return client.post(path, {**body, "key": body["keys"]})
        return client.post(path, body, format="json")
    if route.startswith("page_"):
        # The page's form post (activate and revoke: past the page's confirmation step).
        return client.post(path, {"reason": "authorization matrix", "confirmed": "yes"})
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

    if want == ITEM_403:
        assert response.status_code == 201, (response.status_code, response.content[:300])
        (item,) = response.json()["results"]
        assert item["error"]["status"] == 403 and item["error"]["detail"] == "This agent key may not report for host matrix-host."
        assert _state() == before
        return
    if isinstance(want, str):  # a redirect
        code, location = want.split()
        assert response.status_code == int(code), (response.status_code, response.content[:300])
        assert response["Location"].split("?")[0] == location, response["Location"]
    else:
        assert response.status_code == want, (response.status_code, response.content[:300])
    is_api = path.startswith(("/api/", "/ingest/", "/command/"))
    if is_api and want == 401:
        if principal == "anonymous":
            assert response.json() == {"detail": "Not authenticated"}
        else:
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    if is_api and want == 403:
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
        if principal == "foreign_agent" and (route in INGEST or route in HOST_REPORT or route in EVENTS):
            assert response.json()["detail"] == "This agent key may not report for host matrix-host."
    if want == 404:
        assert "is not collected by this server" in response.json()["detail"]

    after = _state()
    accepted = want in (200, 201, PAGE, ALERTS)
    if method == "GET" or not accepted:
        assert after == before, f"{method} {path} as {principal} changed the database: {before} -> {after}"
        return
    # Accepted POSTs did what they say, and only that.
    if route in INGEST:
        assert after["snapshots"] == before["snapshots"] + 1
        expected_processes = 3
        assert after["records"] == before["records"] + expected_processes
        assert after["runs"] == before["runs"] and after["active"] == before["active"]
    elif route in EVENTS:  # one start: a carrier and its record
        assert after["snapshots"] == before["snapshots"] + 1 and after["records"] == before["records"] + 1
        assert Snapshot.objects.filter(source="event").count() == 1
        assert after["runs"] == before["runs"] and after["active"] == before["active"]
    elif route in HOST_REPORT:  # the host's OS is recorded, no snapshot
        assert Endpoint.objects.get(hostname="matrix-host").os == "darwin"
        assert after["snapshots"] == before["snapshots"] and after["records"] == before["records"]
    elif route in STARTS_RUN:
        assert after["runs"] == before["runs"] + 1
        assert TrainingRun.objects.latest("id").status == "queued"
        assert after["snapshots"] == before["snapshots"] and after["active"] == before["active"]
    elif route in ACTIVATES:
        assert before["active"] == [] and after["active"] == [world["version"]]
        assert after["runs"] == before["runs"] and after["snapshots"] == before["snapshots"]
    elif route in TRIAGES:
        assert before["triaged"] == [] and after["triaged"] == ["acknowledged"]
        assert after["runs"] == before["runs"] and after["snapshots"] == before["snapshots"]
    elif route in REVOKES:
        assert after["approvals"] == before["approvals"] - 1 and after["runs"] == before["runs"]
    elif route == "channel_test":  # one message, sent at once
        assert after["deliveries"] == before["deliveries"] + 1 and len(mail.outbox) == 1
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
        concrete = "/" + (pattern.replace("<int:pk>", "{run}").replace("<int:version>", "{version}")
                          .replace("<str:key>", "{key}").replace("<str:hostname>", "{host}"))
        if concrete not in covered and concrete + "/" not in covered:
            missing.append(concrete)
    assert missing == []
